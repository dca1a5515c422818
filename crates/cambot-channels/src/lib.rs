//! # cambot-channels
//!
//! Everything about chat channels: the [`Channel`] trait every channel implements, the
//! [`ChannelHost`] callbacks cambot gives them ([`ChannelOpts`]), [`load_channels`] which builds
//! and connects the configured ones, and every implementation (today: [`cli`] and [`web`], the browser chat).
//!
//! The orchestrator depends on this crate's traits and `load_channels` only; adding a channel
//! touches nothing outside this crate (story 0.1).
#![forbid(unsafe_code)]

mod channel;
pub mod cli;
mod error;
mod locks;
mod registry;
pub mod web;

pub use channel::BoxFuture;
pub use channel::Channel;
pub use channel::ChannelEvent;
pub use channel::ChannelHost;
pub use channel::ChannelOpts;
pub use channel::GroupRegistrationRequest;
pub use channel::KeySealer;
pub use channel::Outbound;
pub use error::ChannelError;
pub use error::HostError;
pub use registry::ChannelsConfig;
pub use registry::load_channels;
pub use web::WebChannel;
pub use web::WebConfig;
