//! The tracing subscriber: human or JSON lines on stderr, filtered by `log.level` / CAMBOT_LOG.

use cambot_agent::config::Config;
use cambot_agent::config::LogFormat;
use tracing_subscriber::EnvFilter;

pub(crate) fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log.level).unwrap_or_else(|e| {
        eprintln!(
            "warning: log level {:?} is invalid ({e}); using info",
            config.log.level
        );
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("warning: logging not initialised: {e}");
    }
}
