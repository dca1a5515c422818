//! Which channels exist, how they are configured, and building them.

use std::sync::Arc;

use serde::Deserialize;
use serde::Serialize;

use crate::channel::Channel;
use crate::channel::ChannelOpts;
use crate::cli::CliChannel;
use crate::cli::CliConfig;
use crate::error::ChannelError;
use crate::web::WebChannel;
use crate::web::WebConfig;

/// The `[channels]` table of the config file: one optional sub-table per channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    /// The terminal channel (`[channels.cli]`).
    pub cli: CliConfig,
    /// The browser chat (`[channels.web]`).
    pub web: WebConfig,
}

/// Builds every enabled channel, connects each (in order) and returns them. A channel that
/// fails to connect fails the whole load with its error; none enabled is an error too.
pub async fn load_channels(
    config: &ChannelsConfig,
    opts: ChannelOpts,
) -> Result<Vec<Arc<dyn Channel>>, ChannelError> {
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    if config.cli.enabled {
        channels.push(Arc::new(CliChannel::stdio(opts.clone(), &config.cli)?));
    }
    if config.web.enabled {
        channels.push(Arc::new(WebChannel::new(opts.clone(), &config.web)?));
    }
    if channels.is_empty() {
        return Err(ChannelError::NoChannels);
    }
    for channel in &channels {
        channel.connect().await?;
        tracing::info!(channel = channel.name(), "channel connected");
    }
    Ok(channels)
}
