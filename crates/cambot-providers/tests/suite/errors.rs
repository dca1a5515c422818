//! Every error class per dialect, with `retryable` right; retries under paused time, measured
//! at the stand-in (the gap between a failed attempt and its retry).

use std::time::Duration;

use cambot_providers::Dialect;
use cambot_providers::ErrorKind;
use cambot_providers::HttpProvider;
use cambot_providers::ProviderError;
use cambot_providers::StreamEvent;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::StandinHandle;

use super::support::*;

fn gap(h: &StandinHandle, a: usize, b: usize) -> Duration {
    let r = h.requests();
    r[b].at - r[a].at
}

/// Events of a text script up to and including the first text delta.
fn events_through_first_text(d: Dialect) -> usize {
    match d {
        // message_start, ping, content_block_start, first text_delta
        Dialect::Anthropic => 4,
        // role chunk, first content chunk
        Dialect::OpenAi => 2,
        Dialect::Ollama => 1,
    }
}

/// Events of a text script that carry no output at all.
fn events_before_output(d: Dialect) -> usize {
    match d {
        Dialect::Anthropic => 3,
        Dialect::OpenAi => 1,
        Dialect::Ollama => 0,
    }
}

async fn call(d: Dialect, scripts: Vec<Script>) -> (StandinHandle, HttpProvider) {
    let mut b = builder(d);
    for s in scripts {
        b = b.reply(s);
    }
    let h = b.start_tcp().await.unwrap();
    let p = provider(d, &h.base_url());
    (h, p)
}

#[tokio::test(start_paused = true)]
async fn rate_limits_are_retried_after_the_requested_delay() {
    for d in Dialect::ALL {
        let (h, p) = call(d, vec![Script::rate_limited(7), Script::text("ok")]).await;
        let (events, err) = run(&p, hi()).await;
        assert!(err.is_none(), "{d}: {err:?}");
        assert_eq!(text_of(&events), "ok");
        assert_eq!(h.request_count(), 2, "{d}");
        let g = gap(&h, 0, 1);
        assert!(
            g >= Duration::from_secs(7) && g < Duration::from_millis(7_100),
            "{d}: {g:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn overloaded_and_server_errors_back_off_and_retry() {
    for d in Dialect::ALL {
        let (h, p) = call(
            d,
            vec![
                Script::overloaded(),
                Script::server_error(),
                Script::text("ok"),
            ],
        )
        .await;
        let (events, err) = run(&p, hi()).await;
        assert!(err.is_none(), "{d}: {err:?}");
        assert_eq!(text_of(&events), "ok");
        assert_eq!(h.request_count(), 3);
        // 0.5 s then 1 s, each shortened by up to a quarter of jitter.
        let (g1, g2) = (gap(&h, 0, 1), gap(&h, 1, 2));
        assert!(
            g1 >= Duration::from_millis(375) && g1 <= Duration::from_millis(520),
            "{d}: {g1:?}"
        );
        assert!(
            g2 >= Duration::from_millis(750) && g2 <= Duration::from_millis(1_020),
            "{d}: {g2:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreasonable_retry_after_falls_back_to_backoff() {
    let (h, p) = call(
        Dialect::Anthropic,
        vec![Script::rate_limited(3_600), Script::text("ok")],
    )
    .await;
    assert!(run(&p, hi()).await.1.is_none());
    assert!(gap(&h, 0, 1) <= Duration::from_millis(520));
}

#[tokio::test(start_paused = true)]
async fn retries_stop_after_max_retries_with_the_last_error() {
    for d in Dialect::ALL {
        let h = builder(d)
            .fallback(Script::overloaded())
            .start_tcp()
            .await
            .unwrap();
        let p = provider(d, &h.base_url());
        let (events, err) = run(&p, hi()).await;
        assert!(events.is_empty());
        let err = err.unwrap();
        assert_eq!(h.request_count(), 3, "{d}: first attempt + 2 retries");
        let api = err.api().unwrap();
        let want = if d == Dialect::Anthropic {
            ErrorKind::Overloaded
        } else {
            ErrorKind::Server
        };
        assert_eq!(api.kind, want, "{d}");
        assert!(err.retryable());
        assert_eq!(api.request_id.as_deref(), Some("req_standin_3"));
    }
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_not_retried() {
    for d in Dialect::ALL {
        let cases = [
            (
                Script::invalid_request("bad field"),
                400,
                ErrorKind::InvalidRequest,
            ),
            (Script::unauthorized(), 401, ErrorKind::Authentication),
            (Script::forbidden(), 403, ErrorKind::Permission),
            (Script::not_found("no such model"), 404, ErrorKind::NotFound),
        ];
        for (script, status, kind) in cases {
            let (h, p) = call(d, vec![script, Script::text("never")]).await;
            let err = run(&p, hi()).await.1.unwrap();
            let api = err.api().unwrap();
            assert_eq!((api.status, api.kind), (Some(status), kind), "{d}");
            assert!(!err.retryable());
            assert_eq!(h.request_count(), 1, "{d} {status}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn insufficient_quota_and_spend_caps_are_not_retried() {
    for d in [Dialect::Anthropic, Dialect::OpenAi] {
        let (h, p) = call(d, vec![Script::insufficient_quota(), Script::text("never")]).await;
        let err = run(&p, hi()).await.1.unwrap();
        let api = err.api().unwrap();
        assert_eq!(api.status, Some(429));
        assert_eq!(api.kind, ErrorKind::QuotaExceeded, "{d}");
        assert!(!err.retryable());
        assert_eq!(h.request_count(), 1, "{d}");
    }
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_overrides_the_status() {
    let (h, p) = call(
        Dialect::OpenAi,
        vec![
            Script::server_error().header("x-should-retry", "false"),
            Script::text("never"),
        ],
    )
    .await;
    let err = run(&p, hi()).await.1.unwrap();
    assert!(!err.retryable());
    assert_eq!(h.request_count(), 1);
    let (h, p) = call(
        Dialect::Anthropic,
        vec![
            Script::invalid_request("flaky").header("x-should-retry", "true"),
            Script::text("ok"),
        ],
    )
    .await;
    assert!(run(&p, hi()).await.1.is_none());
    assert_eq!(h.request_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_mid_stream_error_before_output_is_retried() {
    for d in Dialect::ALL {
        let first = Script::text("lost words").error_after(
            events_before_output(d),
            "overloaded_error",
            "Overloaded",
        );
        let (h, p) = call(d, vec![first, Script::text("second try")]).await;
        let (events, err) = run(&p, hi()).await;
        assert!(err.is_none(), "{d}: {err:?}");
        assert_eq!(text_of(&events), "second try", "{d}");
        let starts = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::MessageStart { .. }))
            .count();
        assert_eq!(
            starts, 1,
            "{d}: metadata of the failed attempt is not repeated"
        );
        assert_eq!(h.request_count(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn no_retry_once_output_has_streamed() {
    for d in Dialect::ALL {
        let n = events_through_first_text(d);
        let scripts = vec![
            Script::text("partial answer").error_after(n, "overloaded_error", "Overloaded"),
            Script::text("partial answer").drop_after(n),
            Script::text("partial answer").end_after(n),
            Script::text("never"),
        ];
        let (h, p) = call(d, scripts).await;
        let (events, err) = run(&p, hi()).await;
        assert_eq!(text_of(&events), "partial", "{d}");
        let err = err.unwrap();
        assert!(
            err.api().is_some_and(|a| a.status.is_none()),
            "{d}: {err:?}"
        );
        assert!(err.retryable(), "retryable in itself, but not retried");
        let (events, err) = run(&p, hi()).await;
        assert_eq!(text_of(&events), "partial", "{d}");
        assert!(
            matches!(err, Some(ProviderError::Connection(_))),
            "{d}: {err:?}"
        );
        let (_, err) = run(&p, hi()).await;
        assert!(
            matches!(err, Some(ProviderError::IncompleteStream)),
            "{d}: {err:?}"
        );
        assert_eq!(h.request_count(), 3, "{d}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_stream_before_output_is_retried() {
    for d in Dialect::ALL {
        let first = Script::text("x").drop_after(events_before_output(d));
        let (h, p) = call(d, vec![first, Script::text("recovered")]).await;
        let (events, err) = run(&p, hi()).await;
        assert!(err.is_none(), "{d}: {err:?}");
        assert_eq!(text_of(&events), "recovered");
        assert_eq!(h.request_count(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_times_out_and_is_retried() {
    for d in Dialect::ALL {
        let h = builder(d)
            .reply(Script::text("x").stall_after(events_before_output(d)))
            .reply(Script::text("after the stall"))
            .start_tcp()
            .await
            .unwrap();
        let mut c = config(d, &h.base_url());
        c.idle_timeout_ms = 30_000;
        let p = HttpProvider::direct(c, None).unwrap();
        let (events, err) = run(&p, hi()).await;
        assert!(err.is_none(), "{d}: {err:?}");
        assert_eq!(text_of(&events), "after the stall");
        assert!(gap(&h, 0, 1) >= Duration::from_secs(30), "{d}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_retried_then_reported() {
    // Bind and drop a listener: the port is then (almost certainly) closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = provider(Dialect::Anthropic, &format!("http://127.0.0.1:{port}"));
    let err = run(&p, hi()).await.1.unwrap();
    assert!(matches!(err, ProviderError::Connect { .. }), "{err:?}");
    assert!(err.retryable());
}
