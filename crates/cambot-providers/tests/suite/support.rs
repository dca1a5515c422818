//! Shared helpers: a provider pointed at a stand-in, event collection.

use cambot_providers::Dialect;
use cambot_providers::HttpProvider;
use cambot_providers::ModelRequest;
use cambot_providers::Provider;
use cambot_providers::ProviderConfig;
use cambot_providers::ProviderError;
use cambot_providers::StreamEvent;
use cambot_testkit::standin;
use cambot_testkit::standin::Standin;
use futures::StreamExt;

pub(crate) const KEY: &str = "sk-test-123";

pub(crate) fn standin_dialect(d: Dialect) -> standin::Dialect {
    match d {
        Dialect::Anthropic => standin::Dialect::Anthropic,
        Dialect::OpenAi => standin::Dialect::OpenAi,
        Dialect::Ollama => standin::Dialect::Ollama,
    }
}

pub(crate) fn builder(d: Dialect) -> Standin {
    Standin::new(standin_dialect(d))
}

/// A provider for `base_url` with fast, deterministic settings: the model `m`, an idle
/// timeout long enough that paused-time tests only ever jump to retry delays.
pub(crate) fn config(d: Dialect, base_url: &str) -> ProviderConfig {
    let mut c = ProviderConfig::new("test", d)
        .with_base_url(base_url)
        .with_model("m");
    c.idle_timeout_ms = 3_600_000;
    c.connect_timeout_ms = 3_600_000;
    c
}

pub(crate) fn provider(d: Dialect, base_url: &str) -> HttpProvider {
    let key = (d != Dialect::Ollama).then_some(KEY);
    HttpProvider::direct(config(d, base_url), key).unwrap()
}

/// Runs one call; returns every event and the error that ended it, if any.
pub(crate) async fn run(
    p: &impl Provider,
    request: ModelRequest,
) -> (Vec<StreamEvent>, Option<ProviderError>) {
    let mut s = p.stream(request);
    let mut events = Vec::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(e) => events.push(e),
            Err(e) => {
                assert!(s.next().await.is_none(), "nothing may follow an error");
                return (events, Some(e));
            }
        }
    }
    (events, None)
}

pub(crate) fn hi() -> ModelRequest {
    ModelRequest {
        messages: vec![cambot_providers::Message::user("hi")],
        ..ModelRequest::default()
    }
}

pub(crate) fn text_of(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}
