//! The running daemon: opens the store, builds the router and queue, connects channels, recovers
//! unfinished work, runs the delivery and sweep tasks, and shuts all of it down in order.

use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;

use cambot_channels::Channel;
use cambot_channels::ChannelError;
use cambot_channels::ChannelEvent;
use cambot_channels::ChannelOpts;
use cambot_core::Store;
use cambot_gateway::IpcService;
use cambot_gateway::SendLimits;
use cambot_protocol::DataLayout;
use cambot_scheduler::Scheduler;
use cambot_scheduler::SystemClock;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent_run::AgentRunner;
use crate::agent_run::BoxFuture;
use crate::agent_run::RunStartError;
use crate::config::Config;
use crate::formatting::Trigger;
use crate::host::RouterHost;
use crate::locks;
use crate::outbox::Outbox;
use crate::queue::RetryPolicy;
use crate::router::Router;
use crate::router::RouterSettings;
use crate::task_run::TaskExecutor;

/// Builds and connects the channels, given the host callbacks. Production passes
/// [`configured_channels`]; tests pass their own.
pub type ChannelFactory = Box<
    dyn FnOnce(ChannelOpts) -> BoxFuture<'static, Result<Vec<Arc<dyn Channel>>, ChannelError>>
        + Send,
>;

/// The channels named in the config, through `cambot_channels::load_channels`.
/// A web issuer's `secret = "secret:NAME"` is read from its tenant's vault first.
pub fn configured_channels(config: &Config) -> ChannelFactory {
    let mut channels = config.channels.clone();
    let data_dir = config.data_dir.clone();
    Box::new(move |opts| {
        Box::pin(async move {
            crate::channel_secrets::resolve_from_env(&mut channels, &data_dir)
                .await
                .map_err(ChannelError::Config)?;
            cambot_channels::load_channels(&channels, opts).await
        })
    })
}

/// What the daemon hands a [`RunnerFactory`]: the shared state a production runner needs to
/// serve its runs' host sockets.
pub struct RunnerContext {
    pub store: Arc<dyn Store>,
    pub outbox: Outbox,
    pub layout: DataLayout,
    /// The host tools every run's gateway serves.
    pub ipc: Arc<IpcService>,
    /// Cancelled when the daemon stops: long-lived helpers of the runner (a local model
    /// server) stop with it.
    pub cancel: CancellationToken,
    /// The daemon's background tasks: spawn long-lived helpers here so shutdown waits for them.
    pub background: TaskTracker,
    /// The credential vault, when it is in use (or the web channel, which needs it, is on).
    pub vault: Option<Arc<crate::vault::Vault>>,
}

/// Builds the agent runner once the store and host tools exist.
pub type RunnerFactory = Box<
    dyn FnOnce(RunnerContext) -> BoxFuture<'static, Result<Arc<dyn AgentRunner>, RunStartError>>
        + Send,
>;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] cambot_core::StoreError),
    #[error(transparent)]
    OpenStore(#[from] crate::database::OpenStoreError),
    #[error(transparent)]
    Router(#[from] crate::router::RouterError),
    #[error("channels: {0}")]
    Channels(#[from] ChannelError),
    #[error("invalid assistant name for the trigger: {0}")]
    Trigger(#[from] regex::Error),
    #[error("agent runner: {0}")]
    Runner(#[from] RunStartError),
    #[error(
        "channels.web.issuers: issuer {issuer:?} names tenant {tenant:?}, which does not exist \
         (create it first: `cambot tenants add {tenant}`)"
    )]
    UnknownIssuerTenant { issuer: String, tenant: String },
    #[error("credential vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
}

/// Opens the vault when it is in use, or creates its master key when the web channel (which
/// seals its signing keys with it) is on; then seals the signing keys an older cambot stored in
/// plaintext. `None`: no vault yet and no channel needs one.
async fn open_vault(
    config: &Config,
    store: &Arc<dyn Store>,
) -> Result<Option<Arc<crate::vault::Vault>>, DaemonError> {
    let create = config.channels.web.enabled;
    let vault_store = Arc::clone(store) as Arc<dyn cambot_core::VaultStore>;
    let Some(location) = config.master_key.clone() else {
        if create || vault_store.vault_check().await?.is_some() {
            return Err(crate::vault::VaultError::NoHome.into());
        }
        return Ok(None);
    };
    let Some(vault) =
        crate::vault::open_at(vault_store, location, &config.data_dir, create).await?
    else {
        return Ok(None);
    };
    crate::vault::seal_signing_keys(&vault, store.as_ref()).await?;
    Ok(Some(Arc::new(vault)))
}

/// Capacity of the channel-event queue.
const EVENT_CAPACITY: usize = 64;

/// A started daemon.
pub struct Daemon {
    router: Arc<Router>,
    scheduler: Arc<Scheduler>,
    channels: Arc<RwLock<Vec<Arc<dyn Channel>>>>,
    outbox: Outbox,
    background: TaskTracker,
    cancel: CancellationToken,
    events: Option<mpsc::Receiver<ChannelEvent>>,
    shutdown_grace: Duration,
    layout: DataLayout,
    workflows: crate::workflows::Workflows,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").finish_non_exhaustive()
    }
}

impl Daemon {
    /// Starts everything. On return the channels are connected and unfinished work from a
    /// previous run is queued.
    pub async fn start(
        config: &Config,
        runner: Arc<dyn AgentRunner>,
        channel_factory: ChannelFactory,
    ) -> Result<Self, DaemonError> {
        Self::start_with(
            config,
            Box::new(move |_| Box::pin(async move { Ok(runner) })),
            channel_factory,
        )
        .await
    }

    /// Like [`Daemon::start`], with the runner built from the daemon's store and host tools.
    pub async fn start_with(
        config: &Config,
        runner_factory: RunnerFactory,
        channel_factory: ChannelFactory,
    ) -> Result<Self, DaemonError> {
        let layout = DataLayout::new(&config.data_dir);
        let store: Arc<dyn Store> = crate::database::open_store(&layout).await?;
        if config.channels.web.enabled {
            check_issuer_tenants(config, &*store).await?;
        }
        let vault = open_vault(config, &store).await?;
        let outbox = Outbox::new();
        let cancel = CancellationToken::new();
        let background = TaskTracker::new();
        // The host tools reach the router (registrations) through a late-bound handle: the
        // router needs the runner, and the runner needs the host tools.
        let router_slot: Arc<std::sync::OnceLock<std::sync::Weak<Router>>> =
            Arc::new(std::sync::OnceLock::new());
        let on_registered = {
            let slot = Arc::clone(&router_slot);
            Arc::new(move |_group: cambot_protocol::RegisteredGroup| {
                let router = slot.get().and_then(std::sync::Weak::upgrade);
                Box::pin(async move {
                    if let Some(router) = router
                        && let Err(e) = router.refresh_groups().await
                    {
                        tracing::error!(error = %e, "refreshing registrations failed");
                    }
                }) as BoxFuture<'static, ()>
            })
        };
        // Task changes made through the host tools wake the scheduler (created below).
        let scheduler_slot: Arc<std::sync::OnceLock<std::sync::Weak<Scheduler>>> =
            Arc::new(std::sync::OnceLock::new());
        let on_tasks_changed = {
            let slot = Arc::clone(&scheduler_slot);
            Arc::new(move || {
                if let Some(scheduler) = slot.get().and_then(std::sync::Weak::upgrade) {
                    scheduler.wake();
                }
            })
        };
        let timezone: chrono_tz::Tz = config.timezone.parse().unwrap_or(chrono_tz::UTC);
        let on_reply_queued = {
            let outbox = outbox.clone();
            Arc::new(move || outbox.kick())
        };
        let ipc = Arc::new(
            IpcService::new(
                store.clone(),
                layout.clone(),
                on_reply_queued,
                timezone,
                on_registered,
                SendLimits::default(),
            )
            .with_on_tasks_changed(on_tasks_changed),
        );
        let runner = runner_factory(RunnerContext {
            store: store.clone(),
            outbox: outbox.clone(),
            layout: layout.clone(),
            ipc: Arc::clone(&ipc),
            cancel: cancel.clone(),
            background: background.clone(),
            vault: vault.clone(),
        })
        .await
        .inspect_err(|_| cancel.cancel())?;
        let channels: Arc<RwLock<Vec<Arc<dyn Channel>>>> = Arc::new(RwLock::new(Vec::new()));
        let router = Router::new(
            store.clone(),
            RouterSettings {
                assistant_name: config.assistant_name.clone(),
                trigger: Trigger::for_name(&config.assistant_name)?,
                idle_timeout: config.idle_timeout(),
                max_batch_messages: config.router.max_batch_messages,
            },
            Arc::clone(&runner),
            outbox.clone(),
            Arc::clone(&channels),
            config.max_concurrent_runs,
            RetryPolicy::default(),
        )
        .await?;
        let _ = router_slot.set(Arc::downgrade(&router));
        let (event_tx, event_rx) = mpsc::channel(EVENT_CAPACITY);
        let mut host = RouterHost::new(Arc::clone(&router), layout.clone(), event_tx)
            .with_uploads(config.uploads.clone());
        if let Some(vault) = &vault {
            host = host.with_key_sealer(Arc::clone(vault) as Arc<dyn cambot_channels::KeySealer>);
        }
        let host = Arc::new(host);
        let connected = channel_factory(ChannelOpts {
            host: Arc::clone(&host) as Arc<dyn cambot_channels::ChannelHost>,
            assistant_name: config.assistant_name.clone(),
        })
        .await?;
        *locks::write("channels", &channels) = connected;
        // From here a run can find its channel; messages that came in while the channels were
        // connecting are picked up by the recovery pass below.
        host.set_ready();

        background.spawn(outbox.clone().run(
            store.clone(),
            Arc::clone(&channels),
            Duration::from_secs(config.router.delivery_retry_secs.max(1)),
            cancel.clone(),
        ));
        // Replies committed before a crash go out first.
        outbox.kick();
        let queued = router.recover_pending().await?;
        if queued > 0 {
            tracing::info!(
                groups = queued,
                "recovered groups with unprocessed messages"
            );
        }
        let workflows = crate::workflows::start_in_daemon(
            config,
            &store,
            router.queue(),
            &runner,
            &outbox,
            &background,
            &cancel,
        )
        .await;
        ipc.set_workflows(Arc::new(workflows.clone()));
        let tasks = TaskExecutor::new(
            store.clone(),
            router.queue().clone(),
            runner,
            outbox.clone(),
        );
        let scheduler = Scheduler::new(
            store.clone(),
            Arc::new(tasks),
            Arc::new(SystemClock),
            config.scheduler.settings(),
        );
        let _ = scheduler_slot.set(Arc::downgrade(&scheduler));
        background.spawn(Arc::clone(&scheduler).run(cancel.clone()));
        background.spawn(watch_external_changes(
            store.clone(),
            Arc::clone(&router),
            Arc::clone(&scheduler),
            cancel.clone(),
        ));
        if config.router.recovery_sweep_secs > 0 {
            let every = Duration::from_secs(config.router.recovery_sweep_secs);
            let router = Arc::clone(&router);
            let cancel = cancel.clone();
            background.spawn(async move {
                let mut ticker = tokio::time::interval(every);
                ticker.tick().await;
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        _ = ticker.tick() => {
                            // Registrations made by the admin CLI reach the running daemon here.
                            if let Err(e) = router.refresh_groups().await {
                                tracing::error!(error = %e, "refreshing registrations failed");
                            }
                            if let Err(e) = router.recover_pending().await {
                                tracing::error!(error = %e, "recovery sweep failed");
                            }
                        }
                    }
                }
            });
        }
        Ok(Self {
            router,
            scheduler,
            channels,
            outbox,
            background,
            cancel,
            events: Some(event_rx),
            shutdown_grace: Duration::from_secs(config.router.shutdown_grace_secs),
            layout,
            workflows,
        })
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.scheduler
    }

    /// Workflow definitions and runs, driven by this daemon.
    pub fn workflows(&self) -> &crate::workflows::Workflows {
        &self.workflows
    }

    pub fn layout(&self) -> &DataLayout {
        &self.layout
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Channel lifecycle notices (taken once).
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<ChannelEvent>> {
        self.events.take()
    }

    /// Waits until nothing is running or queued and every reply is delivered.
    pub async fn wait_idle(&self) {
        loop {
            let queue_idle = self.router.queue().is_idle();
            let outbox_empty = self
                .router
                .store()
                .pending_outbox(1)
                .await
                .map(|rows| rows.is_empty())
                .unwrap_or(true);
            if queue_idle && outbox_empty {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops intake, lets live runs finish (up to the configured grace), delivers what is
    /// committed, and disconnects the channels. True when everything stopped in time.
    pub async fn shutdown(self) -> bool {
        tracing::info!("shutting down: no new runs; letting live runs finish");
        let drained = self
            .router
            .queue()
            .shutdown(self.shutdown_grace, Duration::from_secs(5))
            .await;
        self.cancel.cancel();
        self.background.close();
        if tokio::time::timeout(Duration::from_secs(10), self.background.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
        let channels: Vec<Arc<dyn Channel>> = locks::read("channels", &self.channels).clone();
        for channel in channels {
            if let Err(e) = channel.disconnect().await {
                tracing::warn!(channel = channel.name(), error = %e, "disconnect failed");
            }
        }
        tracing::info!(drained, "shutdown complete");
        drained
    }

    /// Second signal: kill every live run now.
    pub async fn force_stop(&self) {
        self.router.queue().kill_all().await;
    }
}

/// Notices commits made outside this daemon (the admin CLI in another process) through SQLite's
/// `data_version`, which costs one pragma a second, and applies them: registrations are
/// re-read and the scheduler re-checks its next due time.
async fn watch_external_changes(
    store: Arc<dyn Store>,
    router: Arc<Router>,
    scheduler: Arc<Scheduler>,
    cancel: CancellationToken,
) {
    let mut seen = store.data_version().await.ok();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = store.data_version().await.ok();
        if now != seen {
            seen = now;
            if let Err(e) = router.refresh_groups().await {
                tracing::error!(error = %e, "refreshing registrations failed");
            }
            scheduler.wake();
        }
    }
}

/// Every web issuer's tenant must exist: only the store knows, so this runs at start, not at
/// config load.
async fn check_issuer_tenants(config: &Config, store: &dyn Store) -> Result<(), DaemonError> {
    let tenants = store.tenants().await?;
    for issuer in config.channels.web.all_issuers() {
        if !tenants.contains(&issuer.tenant) {
            return Err(DaemonError::UnknownIssuerTenant {
                issuer: issuer.issuer,
                tenant: issuer.tenant.to_string(),
            });
        }
    }
    Ok(())
}
