//! The terminal channel: one chat (`cli:console`), the tenant's main group, no trigger needed.
//! Each non-blank line typed is a message; replies are printed as `<AssistantName>: <text>`.
//!
//! `cambot chat --tenant T` talks as T's terminal group instead ([`CliChannel::terminal_group`]):
//! its own folder `terminal` and chat `cli:console@T`, so trying a tenant's setup from a shell
//! never shares the session or memory of the tenant's main group.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::GroupFolder;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use serde::Deserialize;
use serde::Serialize;
use tokio::io::AsyncBufRead;
use tokio::io::AsyncBufReadExt;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use crate::channel::BoxFuture;
use crate::channel::Channel;
use crate::channel::ChannelEvent;
use crate::channel::ChannelOpts;
use crate::channel::GroupRegistrationRequest;
use crate::channel::Outbound;
use crate::error::ChannelError;
use crate::locks;

/// The chat every terminal line belongs to.
pub const CLI_JID: &str = "cli:console";
const JID_PREFIX: &str = "cli:";
const NAME: &str = "cli";
/// The folder of a tenant's terminal group (see the module docs).
pub const TERMINAL_FOLDER: &str = "terminal";

/// The chat of `tenant`'s terminal group: unique per tenant, never the default's `cli:console`.
pub fn terminal_jid(tenant: &TenantId) -> String {
    format!("{CLI_JID}@{tenant}")
}

/// `[channels.cli]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CliConfig {
    /// Read messages from the daemon's stdin and print replies on its stdout.
    /// Default: true for `cambot chat`, and for `cambot run` unless set to false.
    pub enabled: bool,
    /// Tenant the terminal speaks for. Default: `default`.
    pub tenant: TenantId,
    /// Talk as the tenant's terminal group instead of its main group: what
    /// `cambot chat --tenant T` sets (not a config key).
    #[serde(skip)]
    pub terminal_group: bool,
}

impl Default for CliConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tenant: TenantId::default_tenant(),
            terminal_group: false,
        }
    }
}

type Reader = Box<dyn AsyncBufRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The terminal channel over any line reader and writer (stdin/stdout in production).
pub struct CliChannel {
    opts: ChannelOpts,
    tenant: TenantId,
    jid: ChatJid,
    folder: GroupFolder,
    group_name: &'static str,
    reader: Mutex<Option<Reader>>,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    connected: Arc<AtomicBool>,
    reader_task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for CliChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliChannel")
            .field("tenant", &self.tenant)
            .field("connected", &self.connected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl CliChannel {
    /// The terminal channel on the process's stdin and stdout.
    pub fn stdio(opts: ChannelOpts, config: &CliConfig) -> Result<Self, ChannelError> {
        let channel = Self::with_io(
            opts,
            config.tenant.clone(),
            Box::new(tokio::io::BufReader::new(tokio::io::stdin())),
            Box::new(tokio::io::stdout()),
        )?;
        if config.terminal_group {
            channel.terminal_group()
        } else {
            Ok(channel)
        }
    }

    /// Talks as the tenant's terminal group (folder [`TERMINAL_FOLDER`], chat
    /// [`terminal_jid`]), registered on connect when it is new.
    pub fn terminal_group(mut self) -> Result<Self, ChannelError> {
        self.jid = ChatJid::new(&terminal_jid(&self.tenant)).map_err(ChannelError::InvalidId)?;
        self.folder = GroupFolder::new(TERMINAL_FOLDER).map_err(ChannelError::InvalidId)?;
        self.group_name = "Terminal";
        Ok(self)
    }

    /// The terminal channel over the given reader and writer.
    pub fn with_io(
        opts: ChannelOpts,
        tenant: TenantId,
        reader: Reader,
        writer: Writer,
    ) -> Result<Self, ChannelError> {
        let jid = ChatJid::new(CLI_JID).map_err(ChannelError::InvalidId)?;
        Ok(Self {
            opts,
            tenant,
            jid,
            folder: GroupFolder::main(),
            group_name: "CLI",
            reader: Mutex::new(Some(reader)),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            connected: Arc::new(AtomicBool::new(false)),
            reader_task: Mutex::new(None),
        })
    }

    fn prompt(&self) -> String {
        format!("{}> ", self.opts.assistant_name)
    }

    async fn write(&self, text: &str) -> Result<(), ChannelError> {
        let mut w = self.writer.lock().await;
        let io = |source| ChannelError::Io {
            channel: NAME.to_owned(),
            source,
        };
        w.write_all(text.as_bytes()).await.map_err(io)?;
        w.flush().await.map_err(io)
    }
}

impl Channel for CliChannel {
    fn name(&self) -> &str {
        NAME
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            self.opts
                .host
                .register_group(GroupRegistrationRequest {
                    tenant: self.tenant.clone(),
                    jid: self.jid.clone(),
                    name: self.group_name.to_owned(),
                    folder: self.folder.clone(),
                    trigger: format!("@{}", self.opts.assistant_name),
                    requires_trigger: Some(false),
                })
                .await?;
            let reader = locks::lock("cli reader", &self.reader).take();
            let Some(reader) = reader else {
                return Err(ChannelError::Config("cli channel connected twice".into()));
            };
            self.connected.store(true, Ordering::SeqCst);
            let task = tokio::spawn(read_lines(
                reader,
                self.opts.clone(),
                self.tenant.clone(),
                self.jid.clone(),
            ));
            *locks::lock("cli reader task", &self.reader_task) = Some(task);
            self.write(&self.prompt()).await
        })
    }

    fn send_message<'a>(
        &'a self,
        message: Outbound<'a>,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if !self.is_connected() {
                return Err(ChannelError::NotConnected {
                    channel: NAME.to_owned(),
                });
            }
            if !self.owns_jid(message.tenant, message.chat_jid) {
                return Err(ChannelError::Delivery {
                    channel: NAME.into(),
                    jid: message.chat_jid.to_string(),
                    reason: format!("the terminal does not speak for tenant {}", message.tenant),
                });
            }
            let line = format!(
                "{}: {}\n{}",
                self.opts.assistant_name,
                message.text,
                self.prompt()
            );
            self.write(&line).await
        })
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// The terminal speaks for one tenant: another tenant's `cli:` chat is not its own.
    fn owns_jid(&self, tenant: &TenantId, jid: &ChatJid) -> bool {
        *tenant == self.tenant && jid.as_str().starts_with(JID_PREFIX)
    }

    fn disconnect(&self) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            self.connected.store(false, Ordering::SeqCst);
            let task = locks::lock("cli reader task", &self.reader_task).take();
            if let Some(task) = task {
                task.abort();
                // The reader is gone once the aborted task is joined.
                let _ = task.await;
            }
            Ok(())
        })
    }
}

/// Reads lines until EOF or abort; each non-blank line becomes metadata plus a message.
async fn read_lines(mut reader: Reader, opts: ChannelOpts, tenant: TenantId, jid: ChatJid) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) => {
                tracing::info!("cli input closed");
                break;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cli input error");
                break;
            }
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let now = chrono::Utc::now();
        let timestamp = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let meta = ChatMetadata {
            tenant: tenant.clone(),
            chat_jid: jid.clone(),
            timestamp: timestamp.clone(),
            name: Some("CLI".to_owned()),
            channel: Some(NAME.to_owned()),
            is_group: Some(false),
        };
        if let Err(e) = opts.host.on_chat_metadata(meta).await {
            tracing::warn!(error = %e, "cli: storing chat metadata failed");
        }
        // Epoch ms alone (the seed's id) collides when two lines arrive in one millisecond.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let message = InboundMessage {
            tenant: tenant.clone(),
            chat_jid: jid.clone(),
            id: format!("cli-{}-{n}", now.timestamp_millis()),
            sender: "cli:user".to_owned(),
            sender_name: "User".to_owned(),
            content: text.to_owned(),
            timestamp,
            is_from_me: false,
            is_bot_message: false,
            attachments: Vec::new(),
        };
        if let Err(e) = opts.host.on_message(message).await {
            tracing::error!(error = %e, "cli: message not accepted");
        }
    }
    // Output keeps working after the input ends (`echo hi | cambot chat` must still print the
    // reply); the host decides what an ended input means.
    opts.host.on_channel_event(ChannelEvent::InputClosed {
        channel: NAME.to_owned(),
    });
}
