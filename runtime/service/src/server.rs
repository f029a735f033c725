//! A configuration → the running service: the log replayed, the core on its own thread (the
//! clock, group commits), the sinks, the HTTP API, and a graceful stop on SIGTERM or Ctrl-C.
//!
//! **Invariant:** a request that changes state is answered only after the transaction holding
//! its command and actions has committed; if the commit fails, it is answered 503 and the
//! engine is rebuilt from the log, so memory never runs ahead of the disk.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, oneshot};

use crate::core::{ActionIds, Core, Empty, Operation, Refusal, Source, When};
use crate::metrics::Metrics;
use crate::sinks::{Signals, Sink};
use crate::store::{Commit, DueUser, Store, Sync};
use journey_runtime::vm::state::HistoryRow;

/// Where the engine's clock comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Clock {
    /// The machine's clock: inputs are processed when they arrive and timers fire as time
    /// passes (production).
    Wall,
    /// Event time, as `journeyc simulate` has it: an input is processed at its `timestamp`,
    /// and time passes only by inputs and `POST /v1/clock` (replays, backfills, tests).
    Event,
}

pub struct Config {
    pub data: PathBuf,
    pub listen: SocketAddr,
    /// Deployed and activated at start, unless it is the newest deployment already.
    pub deploy: Option<PathBuf>,
    /// The bearer token `/v1` requests must carry (`None`: no authentication).
    pub token: Option<String>,
    pub clock: Clock,
    pub sync: Sync,
    pub sinks: Vec<Sink>,
    /// The hosts webhook sinks may post to.
    pub allow_hosts: Vec<String>,
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// The most requests applied in one transaction.
    pub max_batch: usize,
    /// The largest message accepted, in bytes (its JSON text).
    pub max_message: usize,
    /// With event time, how far past the machine's clock a timestamp may be (milliseconds).
    pub max_skew: i64,
    /// How long accepted inputs (and delivered actions) are kept, in milliseconds (0: inputs
    /// are not kept).
    pub keep_inputs: i64,
    /// What the users held in memory may take, in bytes.
    pub memory_limit: usize,
    /// How often the users touched since the last checkpoint are written, and the commands
    /// before it may go: a start after a crash applies at most this much traffic again.
    pub checkpoint_every: Duration,
    /// When hot predicates are compiled to native code.
    pub jit: journey_runtime::jit::Policy,
}

/// `--jit`: whether hot predicates run as native code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Jit {
    /// Hot predicates that native code answers sooner than the interpreter
    /// (`jit::Policy::HotAfter`).
    On,
    /// None.
    Off,
    /// Every hot predicate, whatever its size (`jit::Policy::AllAfter`): for testing the JIT.
    All,
}

/// What the HTTP side asks of the core.
pub enum Request {
    /// Track and identify messages; each gets its own answer.
    Messages {
        messages: Vec<Message>,
        reply: oneshot::Sender<Vec<Result<Fate, Refusal>>>,
    },
    Deploy {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Json, Refusal>>,
    },
    Operate {
        journey: String,
        operation: Operation,
        reply: oneshot::Sender<Result<Json, Refusal>>,
    },
    /// Moves event time forward (`Clock::Event` only).
    Advance {
        until: i64,
        reply: oneshot::Sender<Result<Json, Refusal>>,
    },
    Read {
        query: Query,
        reply: oneshot::Sender<Result<Json, Refusal>>,
    },
}

/// A track or identify message: its JSON text, decoded in the core straight against each
/// schema and logged as it came.
pub struct Message {
    pub text: String,
}

/// What became of an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Applied,
    /// A `track` of an event no deployed schema declares.
    Ignored,
}

pub enum Query {
    Journeys,
    Stats(String),
    User(String),
}

/// What staging a command did: whether it changed anything, and how many actions it made.
struct Staged {
    changed: bool,
    actions: usize,
}

/// The store as the core reads it while applying a command.
struct Reads<'s>(&'s Store);

impl Source for Reads<'_> {
    fn user(&mut self, name: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.user(name)
    }
    fn history(&mut self, name: &str) -> Result<Vec<(i64, HistoryRow)>, String> {
        self.0.history(name)
    }
    fn due(&mut self, after: (i64, u64), until: i64, limit: usize) -> Result<Vec<DueUser>, String> {
        self.0.due(after, until, limit)
    }
    fn first_due_after(&mut self, after: (i64, u64)) -> Result<Option<i64>, String> {
        self.0.first_due_after(after)
    }
    fn working(&mut self, n: i64, limit: Option<usize>) -> Result<Vec<String>, String> {
        self.0.working(n, limit)
    }
}

/// The core's side of the service: the state, the store, and where things stand.
struct Runner {
    core: Core,
    store: Store,
    clock: Clock,
    next_seq: i64,
    metrics: Arc<Metrics>,
    max_message: usize,
    max_skew: i64,
    /// How long inputs (and delivered actions) are kept, in milliseconds.
    keep_inputs: i64,
    /// What the users in memory may take (`--memory-limit`), in bytes.
    memory_limit: usize,
    /// When the store was last pruned.
    pruned: Instant,
    /// Where pruning is asked of the checkpoint thread.
    signals: Arc<Signals>,
    /// When the last checkpoint was written, and the last command it holds.
    checkpoint_every: Duration,
    /// The newest deployment the store holds the bytecode of.
    stored_deployments: i64,
    checkpointed: Instant,
    checkpoint: i64,
    /// Commit errors, written at most once per interval.
    commit_errors: crate::throttle::Throttle,
}

/// One transaction being gathered: what it writes, and the answers that wait for it to
/// commit.
#[derive(Default)]
struct Batch {
    commit: Commit,
    answers: Vec<Box<dyn FnOnce(bool) + Send>>,
}

impl Runner {
    /// Opens the store and the core's state (schema 1's log is moved into users' state
    /// first, once).
    fn open(
        config: &Config,
        metrics: Arc<Metrics>,
        signals: Arc<Signals>,
    ) -> Result<Runner, String> {
        let mut store = Store::open(&config.data, config.sync)?.without_autocheckpoint()?;
        if store.legacy_log()? {
            migrate(&mut store, config.jit)?;
        }
        let Loaded {
            core,
            next_seq,
            checkpoint,
            stored_deployments,
        } = load(&store, config.jit)?;
        let mut runner = Runner {
            core,
            store,
            clock: config.clock,
            next_seq,
            metrics,
            max_message: config.max_message,
            max_skew: config.max_skew,
            keep_inputs: config.keep_inputs,
            memory_limit: config.memory_limit,
            pruned: Instant::now(),
            signals,
            checkpoint_every: config.checkpoint_every,
            stored_deployments,
            checkpointed: Instant::now(),
            checkpoint,
            commit_errors: crate::throttle::Throttle::default(),
        };
        runner.core.set_action_ids(ActionIds::random()?);
        Ok(runner)
    }

    /// The command number the next command takes.
    fn take_seq(&mut self) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Applies a deployment, lifecycle move or clock advance and stages what it changed.
    fn stage(&mut self, batch: &mut Batch, command: Command) -> Result<Staged, Refusal> {
        let seq = self.next_seq;
        let mut reads = Reads(&self.store);
        let applied = match &command {
            Command::Deploy(bytes) => self.core.deploy(bytes)?,
            Command::Operate(journey, operation) => {
                self.core.operate(seq, journey, *operation, &mut reads)?
            }
            Command::Advance(until) => self.core.advance(seq, *until, &mut reads)?,
        };
        if applied.changed {
            use crate::core::kind;
            self.take_seq();
            let at = self.core.now();
            batch.commit.commands.push(match command {
                Command::Deploy(bytes) => (seq, kind::DEPLOY, at, bytes),
                Command::Operate(journey, operation) => {
                    let body = json!({ "journey": journey, "operation": operation.name() });
                    (seq, kind::STATE, at, body.to_string().into_bytes())
                }
                Command::Advance(until) => (seq, kind::ADVANCE, until, Vec::new()),
            });
        }
        let staged = Staged {
            changed: applied.changed,
            actions: applied.actions.len(),
        };
        batch.commit.actions.extend(applied.actions);
        Ok(staged)
    }

    /// Applies a request's messages, each accepted or refused on its own, and stages the
    /// accepted ones as one command (one row of inputs for the request, whatever its size).
    fn stage_messages(
        &mut self,
        batch: &mut Batch,
        messages: Vec<Message>,
    ) -> Vec<Result<Fate, Refusal>> {
        let seq = self.next_seq;
        let mut body = String::new();
        let mut last_at = self.core.now();
        let mut accepted = false;
        let mut fates = Vec::with_capacity(messages.len());
        let when = match self.clock {
            Clock::Wall => When::At(self.now()),
            Clock::Event => When::Stamped {
                latest: wall_ms().saturating_add(self.max_skew),
            },
        };
        for message in messages {
            let input = if message.text.len() > self.max_message {
                Err(Refusal::new(
                    413,
                    "too-large",
                    format!(
                        "the message is {} bytes: one message is at most {} bytes (--max-message)",
                        message.text.len(),
                        self.max_message
                    ),
                ))
            } else {
                self.core
                    .input(seq, &message.text, when, &mut Reads(&self.store))
            };
            let fate = match input {
                Ok((applied, at)) if applied.changed => {
                    // What the programs read, on one line.
                    let kept = match applied.read_whole {
                        true => None,
                        false => self.core.kept(&message.text),
                    };
                    let text = kept.as_deref().unwrap_or(&message.text);
                    if text.contains('\n') {
                        let one_line = serde_json::from_str::<Json>(text)
                            .map_or_else(|_| text.replace('\n', " "), |j| j.to_string());
                        crate::core::push_input_line(&mut body, at, &one_line);
                    } else {
                        crate::core::push_input_line(&mut body, at, text);
                    }
                    accepted = true;
                    batch.commit.actions.extend(applied.actions);
                    last_at = at;
                    Ok(Fate::Applied)
                }
                Ok(_) => Ok(Fate::Ignored),
                Err(refusal) => Err(refusal),
            };
            match &fate {
                Ok(Fate::Applied) => self.metrics.accepted.fetch_add(1, Relaxed),
                Ok(Fate::Ignored) => self.metrics.ignored.fetch_add(1, Relaxed),
                Err(_) => self.metrics.refused.fetch_add(1, Relaxed),
            };
            fates.push(fate);
        }
        if accepted {
            self.take_seq();
            batch
                .commit
                .commands
                .push((seq, crate::core::kind::INPUT, last_at, body.into_bytes()));
        }
        fates
    }

    /// The time a command is applied at: the machine's clock (never before what the engines
    /// processed), or with event time, where the engines are.
    fn now(&self) -> i64 {
        match self.clock {
            Clock::Wall => wall_ms().max(self.core.now()),
            Clock::Event => self.core.now(),
        }
    }

    /// When the next timer is due, in memory or in the store.
    fn next_timer_at(&self) -> Option<i64> {
        self.core.next_timer_due(&mut Reads(&self.store))
    }

    /// In wall-clock mode, fires the timers due by now.
    fn tick(&mut self, batch: &mut Batch) {
        if self.clock != Clock::Wall {
            return;
        }
        let now = self.now();
        if self.next_timer_at().is_some_and(|due| due <= now) {
            if let Err(refusal) = self.stage(batch, Command::Advance(now)) {
                self.commit_errors.say(&format!(
                    "journey-runtime: error: timers due at {} wait: {}",
                    crate::rfc3339_ms(now),
                    refusal.message
                ));
            }
        }
    }

    fn handle(&mut self, batch: &mut Batch, request: Request) {
        match request {
            Request::Messages { messages, reply } => {
                let fates = self.stage_messages(batch, messages);
                batch.answers.push(Box::new(move |committed| {
                    let answer = if committed {
                        fates
                    } else {
                        fates
                            .into_iter()
                            .map(|f| f.and(Err(unavailable())))
                            .collect()
                    };
                    let _ = reply.send(answer);
                }));
            }
            Request::Deploy { bytes, reply } => {
                let result = self.stage(batch, Command::Deploy(bytes));
                let journeys = self.core.journeys();
                answer(batch, reply, result.map(|_| journeys));
            }
            Request::Operate {
                journey,
                operation,
                reply,
            } => {
                let result = self.stage(batch, Command::Operate(journey.clone(), operation));
                let result = result.and_then(|_| self.core.stats(&journey));
                answer(batch, reply, result);
            }
            Request::Advance { until, reply } => {
                let result = if self.clock != Clock::Event {
                    Err(Refusal::new(
                        409,
                        "wall-clock",
                        "the clock is the machine's (--clock wall): it cannot be moved",
                    ))
                } else if until < self.core.now() {
                    Err(Refusal::new(
                        409,
                        "clock-backwards",
                        format!(
                            "the clock is at {} already",
                            crate::rfc3339_ms(self.core.now())
                        ),
                    ))
                } else {
                    self.stage(batch, Command::Advance(until))
                        .map(|applied| json!({ "now": crate::rfc3339_ms(until), "actions": applied.actions }))
                };
                answer(batch, reply, result);
            }
            Request::Read { query, reply } => {
                let result = match query {
                    Query::Journeys => Ok(self.core.journeys()),
                    Query::Stats(journey) => self.core.stats(&journey),
                    Query::User(user) => self.user(&user),
                };
                answer(batch, reply, result);
            }
        }
    }

    fn user(&mut self, name: &str) -> Result<Json, Refusal> {
        let mut user = self
            .core
            .user(name, &mut Reads(&self.store))?
            .ok_or_else(|| Refusal::new(404, "no-user", format!("no user `{name}` is known")))?;
        let recent: Vec<Json> = self
            .store
            .recent_actions(name, 20)
            .map_err(|e| Refusal::new(500, "store", e))?
            .iter()
            .filter_map(|a| serde_json::from_str(a).ok())
            .collect();
        if let Some(object) = user.as_object_mut() {
            object.insert("recent_actions".into(), Json::Array(recent));
        }
        Ok(user)
    }

    /// Commits a batch and answers its requests: its commands and actions, and — every
    /// `--checkpoint-every`, or when `checkpoint` asks — the users touched since the last
    /// checkpoint, the deployments made since, and the core's state. On failure it answers
    /// 503 and puts memory back as the store has it: the core is loaded anew (the last
    /// checkpoint, and the commands after it applied again, at most a checkpoint's interval).
    /// Answers `None` if it failed, else whether it stored actions (the sinks have work).
    fn commit(&mut self, mut batch: Batch, checkpoint: bool) -> Option<bool> {
        let started = Instant::now();
        let checkpoint = checkpoint || self.checkpointed.elapsed() >= self.checkpoint_every;
        if checkpoint {
            // (A deployment's bytecode is stored with its command, and with the checkpoint
            // that holds it.)
            batch.commit.deployments = self.core.deployments_after(self.stored_deployments);
            let (users, work) = self.core.take_writes();
            batch.commit.users = users;
            batch.commit.work = work;
            if self.core.state_changed()
                || !batch.commit.users.is_empty()
                || !batch.commit.commands.is_empty()
            {
                batch.commit.state = Some(self.core.state(self.next_seq));
            }
        }
        let writes = !batch.commit.is_empty();
        let committed = if writes {
            match self.store.commit(&batch.commit) {
                Ok(()) => {
                    self.commit_errors.reset();
                    true
                }
                Err(error) => {
                    self.commit_errors
                        .say(&format!("journey-runtime: error: a commit failed: {error}"));
                    false
                }
            }
        } else {
            true
        };
        if writes {
            self.metrics.commits.fetch_add(1, Relaxed);
            self.metrics
                .commit_micros
                .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
            self.metrics
                .actions
                .fetch_add(batch.commit.actions.len() as u64, Relaxed);
            self.metrics
                .predicates_native
                .store(self.core.compiled_predicates() as u64, Relaxed);
        }
        if !committed {
            self.roll_back();
        } else if checkpoint {
            self.core.saved();
            self.stored_deployments = self.core.newest();
            self.checkpointed = Instant::now();
            self.checkpoint = self.next_seq - 1;
            let evicted = self.core.evict_over(self.memory_limit);
            self.metrics.evicted.fetch_add(evicted as u64, Relaxed);
            self.prune();
        }
        for answer in batch.answers {
            answer(committed);
        }
        let (users, bytes) = self.core.residents();
        self.metrics.users_in_memory.store(users as u64, Relaxed);
        self.metrics.memory_reckoned.store(bytes as u64, Relaxed);
        self.metrics
            .timers_fired
            .store(self.core.timers_fired(), Relaxed);
        committed.then_some(!batch.commit.actions.is_empty())
    }

    /// Memory back to what the store holds after a failed commit: the core loaded anew.
    fn roll_back(&mut self) {
        match load(&self.store, self.core.jit()) {
            Ok(loaded) => {
                let mut core = loaded.core;
                core.set_action_ids(self.core.take_action_ids());
                self.core = core;
                self.next_seq = loaded.next_seq;
            }
            Err(error) => {
                say!("journey-runtime: error: cannot load the state back from the store: {error}");
                std::process::exit(1);
            }
        }
    }

    /// Every minute (or every `--keep-inputs`, if shorter): commands the last checkpoint holds
    /// (but inputs younger than `--keep-inputs`), and actions every sink delivered that are
    /// as old, leave the store — on the checkpoint thread.
    fn prune(&mut self) {
        let every = Duration::from_millis(self.keep_inputs.clamp(1_000, 60_000) as u64);
        if self.pruned.elapsed() < every {
            return;
        }
        self.pruned = Instant::now();
        let before = self.now().saturating_sub(self.keep_inputs);
        if let Ok(mut prune) = self.signals.prune.lock() {
            *prune = Some((before, self.checkpoint));
        }
    }
}

/// The core as the store holds it: the last checkpoint, then the commands after it applied
/// again (their actions are in the outbox already); and the next command's number.
fn load(store: &Store, jit: journey_runtime::jit::Policy) -> Result<Loaded, String> {
    let started = Instant::now();
    let deployments = store.deployments()?;
    let stored_deployments = deployments.last().map_or(0, |d| d.0);
    let (mut core, mut next_seq) = Core::load(jit, store.state()?.as_deref(), deployments)?;
    let checkpoint = next_seq - 1;
    let mut applied = 0usize;
    store.commands_after(next_seq - 1, &mut |command| {
        core.apply(
            command.seq,
            &command.kind,
            command.at,
            &command.body,
            &mut Reads(store),
        )
        .map_err(|refusal| {
            format!(
                "command {} ({}) after the last checkpoint no longer applies: {}",
                command.seq, command.kind, refusal.message
            )
        })?;
        next_seq = command.seq + 1;
        applied += 1;
        Ok(())
    })?;
    if applied > 0 {
        say!(
            "journey-runtime: applied the {applied} commands after the last checkpoint in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(Loaded {
        core,
        next_seq,
        checkpoint,
        stored_deployments,
    })
}

/// What `load` answers: the core, the next command's number, the last command the stored
/// checkpoint holds, and the newest deployment the store holds the bytecode of.
struct Loaded {
    core: Core,
    next_seq: i64,
    checkpoint: i64,
    stored_deployments: i64,
}

/// A command that changes the service's own state (inputs are staged apart).
enum Command {
    Deploy(Vec<u8>),
    Operate(String, Operation),
    Advance(i64),
}

/// Schema 1 → 2: the log's commands applied (all users in memory), then the state they built
/// written as schema 2, and the log dropped, in one transaction.
fn migrate(store: &mut Store, jit: journey_runtime::jit::Policy) -> Result<(), String> {
    let started = Instant::now();
    say!("journey-runtime: moving the command log (schema 1) into users' state (schema 2)");
    let mut core = Core::new(jit);
    let mut deployments = Vec::new();
    let mut last_seq = 0;
    let mut count = 0usize;
    store.each_logged(&mut |command| {
        let applied = core
            .apply(
                command.seq,
                &command.kind,
                command.at,
                &command.body,
                &mut Empty,
            )
            .map_err(|refusal| {
                format!(
                    "the log's command {} ({}) no longer applies: {}",
                    command.seq, command.kind, refusal.message
                )
            })?;
        if command.kind == crate::core::kind::DEPLOY && applied.changed {
            deployments.push((core.newest(), command.body.clone()));
        }
        last_seq = command.seq;
        count += 1;
        Ok(())
    })?;
    let (users, work) = core.take_writes();
    let commit = Commit {
        deployments,
        state: Some(core.state(last_seq + 1)),
        users,
        work,
        ..Commit::default()
    };
    store.finish_migration(&commit)?;
    say!(
        "journey-runtime: moved {count} commands into the state of {} users in {:.2} s",
        commit.users.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn answer(
    batch: &mut Batch,
    reply: oneshot::Sender<Result<Json, Refusal>>,
    result: Result<Json, Refusal>,
) {
    batch.answers.push(Box::new(move |committed| {
        let _ = reply.send(if committed {
            result
        } else {
            result.and(Err(unavailable()))
        });
    }));
}

fn unavailable() -> Refusal {
    Refusal::new(
        503,
        "not-stored",
        "the store could not commit: nothing of this request was kept; try again",
    )
}

/// The machine's time in milliseconds since the epoch.
pub fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub use crate::rfc3339_ms;

/// The core's loop: gathers requests into batches, fires due timers, commits, answers; returns
/// when every sender is gone (the HTTP server has stopped).
fn run_core(
    mut runner: Runner,
    mut requests: mpsc::Receiver<Request>,
    max_batch: usize,
    signals: Arc<Signals>,
    runtime: tokio::runtime::Handle,
) {
    loop {
        // (With event time, time moves only with requests: nothing to wake for.)
        let due = match runner.clock {
            Clock::Wall => runner.next_timer_at(),
            Clock::Event => None,
        };
        let wait = due.map_or(Duration::from_secs(1), |due| {
            Duration::from_millis(due.saturating_sub(wall_ms()).clamp(0, 1000) as u64)
        });
        let first = runtime.block_on(async { tokio::time::timeout(wait, requests.recv()).await });
        let mut batch = Batch::default();
        runner.tick(&mut batch);
        let mut closed = false;
        match first {
            Ok(Some(request)) => runner.handle(&mut batch, request),
            Ok(None) => closed = true,
            Err(_) => {}
        }
        let mut taken = 1;
        while taken < max_batch {
            match requests.try_recv() {
                Ok(request) => {
                    runner.handle(&mut batch, request);
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        let stopping = closed || signals.core_stop.load(std::sync::atomic::Ordering::SeqCst);
        if runner.commit(batch, stopping) == Some(true) {
            signals.committed.notify_waiters();
        }
        if closed || signals.core_stop.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
    }
}

/// Why `serve` ended before its stop.
#[derive(Debug)]
pub enum Failure {
    /// The service could not start or went wrong.
    Failed(String),
    /// The check of the whole store found it damaged: the service stopped (as at a signal)
    /// and the store wants restoring from a backup.
    Damaged(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Failed(message)
    }
}

/// Runs the service until a signal (or a damaged store) stops it.
pub async fn serve(config: Config) -> Result<(), Failure> {
    for sink in &config.sinks {
        if let Sink::Webhook(url) = sink {
            let host = crate::sinks::webhook_host(url)?;
            if !config
                .allow_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&host))
            {
                return Err(Failure::Failed(format!(
                    "the webhook sink posts to `{host}`, which is not allow-listed: add `--allow-host {host}`"
                )));
            }
        }
    }
    // A write past the file-size limit (RLIMIT_FSIZE) is an error like a full disk, answered
    // as one (503, the batch forgotten), not a signal that kills the process.
    #[cfg(unix)]
    let _file_size_limit =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ))
            .map_err(|e| format!("cannot take SIGXFSZ: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let signals = Arc::new(Signals::default());
    let mut runner = Runner::open(&config, metrics.clone(), signals.clone())?;
    if let Some(path) = &config.deploy {
        deploy_at_start(&mut runner, path)?;
    }
    let (sender, receiver) = mpsc::channel::<Request>(4096);
    let runtime = tokio::runtime::Handle::current();
    let core = {
        let signals = signals.clone();
        let max_batch = config.max_batch;
        let runtime = runtime.clone();
        std::thread::Builder::new()
            .name("journey-core".into())
            .spawn(move || run_core(runner, receiver, max_batch, signals, runtime))
            .map_err(|e| format!("cannot start the core thread: {e}"))?
    };
    let checkpointer = {
        let (data, sync, signals) = (config.data.clone(), config.sync, signals.clone());
        let sinks: Vec<String> = config.sinks.iter().map(Sink::name).collect();
        std::thread::Builder::new()
            .name("journey-checkpoint".into())
            .spawn(move || checkpoint_until_stopped(data, sync, signals, sinks))
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?
    };
    let mut sinks = Vec::new();
    for sink in &config.sinks {
        let (sink, data, sync) = (sink.clone(), config.data.clone(), config.sync);
        let (signals, metrics, runtime) = (signals.clone(), metrics.clone(), runtime.clone());
        sinks.push(
            std::thread::Builder::new()
                .name(format!("journey-sink {}", sink.name()))
                .spawn(move || crate::sinks::deliver(sink, data, sync, signals, metrics, runtime))
                .map_err(|e| format!("cannot start a sink thread: {e}"))?,
        );
    }
    let app = crate::http::router(crate::http::AppState {
        requests: sender,
        token: config.token.clone(),
        metrics: metrics.clone(),
        max_body: config.max_body,
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    say!("journey-runtime: listening on http://{address}");
    // The whole store is checked beside the service (a start checks what it reads): damage
    // found stops the service as a signal would.
    let check = StoreCheck::start(&config.data, metrics.clone())?;
    let damage = check.found.clone();
    // At the signal the server stops accepting and waits for open requests, for at most
    // `STOP_GRACE`: a stop must not hang on a connection that never ends.
    let signalled = Arc::new(tokio::sync::Notify::new());
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let signalled = signalled.clone();
        async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = damage.notified() => {}
            }
            signalled.notify_one();
        }
    });
    tokio::select! {
        served = std::future::IntoFuture::into_future(server) => {
            served.map_err(|e| format!("the HTTP server failed: {e}"))?;
        }
        () = async {
            signalled.notified().await;
            tokio::time::sleep(STOP_GRACE).await;
        } => {
            say!("journey-runtime: stopping: requests still open after {STOP_GRACE:?} are dropped");
        }
    }
    say!("journey-runtime: stopping: finishing the last commit and deliveries");
    // The core commits what it has taken and returns (within a second: it wakes that often).
    signals
        .core_stop
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = tokio::task::spawn_blocking(move || core.join()).await;
    signals
        .stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    signals.committed.notify_waiters();
    let damaged = tokio::task::spawn_blocking(move || {
        sinks.into_iter().for_each(|s| drop(s.join()));
        drop(checkpointer.join());
        check.finish()
    })
    .await;
    match damaged {
        Ok(Some(damage)) => Err(Failure::Damaged(damage)),
        _ => Ok(()),
    }
}

/// `datadir::check` of the whole store on a thread of its own, beside the service.
struct StoreCheck {
    thread: std::thread::JoinHandle<Result<(), String>>,
    /// Told when the check found damage.
    found: Arc<tokio::sync::Notify>,
    /// The check's connection's interrupt handle, once it is open.
    interrupt: Arc<Mutex<Option<rusqlite::InterruptHandle>>>,
}

impl StoreCheck {
    /// Starts the check of the database in `data`; `metrics` learns when it passed.
    fn start(data: &std::path::Path, metrics: Arc<Metrics>) -> Result<StoreCheck, String> {
        let found = Arc::new(tokio::sync::Notify::new());
        let interrupt = Arc::new(Mutex::new(None));
        let path = crate::datadir::database(data);
        let (notify, handle) = (found.clone(), interrupt.clone());
        let thread = std::thread::Builder::new()
            .name("journey-check".into())
            .spawn(move || {
                let checked = crate::datadir::check(&path, |h| {
                    if let Ok(mut slot) = handle.lock() {
                        *slot = Some(h);
                    }
                });
                match &checked {
                    Ok(()) => metrics.store_checked.store(true, Relaxed),
                    Err(_) => notify.notify_one(),
                }
                checked
            })
            .map_err(|e| format!("cannot start the check thread: {e}"))?;
        Ok(StoreCheck {
            thread,
            found,
            interrupt,
        })
    }

    /// At the stop: the damage the check found, if it ended; a check still running is
    /// interrupted (what it would find waits for the next start).
    fn finish(self) -> Option<String> {
        if !self.thread.is_finished() {
            if let Ok(Some(handle)) = self.interrupt.lock().map(|mut h| h.take()) {
                handle.interrupt();
            }
            let _ = self.thread.join();
            return None;
        }
        self.thread.join().ok()?.err()
    }
}

/// Checkpoints the WAL ten times a second on a connection of its own (the core's commits leave it
/// undone), and once more at the stop.
fn checkpoint_until_stopped(data: PathBuf, sync: Sync, signals: Arc<Signals>, sinks: Vec<String>) {
    let store = match Store::attach(&data, sync) {
        Ok(store) => store,
        Err(error) => {
            say!("journey-runtime: error: checkpoints: {error}");
            return;
        }
    };
    let mut errors = crate::throttle::Throttle::default();
    loop {
        let stopping = signals.stopping.load(std::sync::atomic::Ordering::SeqCst);
        match store.checkpoint() {
            Ok(()) => errors.reset(),
            Err(error) => errors.say(&format!("journey-runtime: error: checkpoint: {error}")),
        }
        let prune = signals.prune.lock().ok().and_then(|mut p| p.take());
        if let Some((before, checkpoint)) = prune {
            if let Err(error) = store.prune(before, checkpoint, &sinks) {
                errors.say(&format!(
                    "journey-runtime: error: pruning the store: {error}"
                ));
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `--deploy FILE`: deploys the file and activates its journeys, unless it is the newest
/// deployment already (a restart with the same flag changes nothing).
fn deploy_at_start(runner: &mut Runner, path: &std::path::Path) -> Result<(), String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut batch = Batch::default();
    let deployed = runner
        .stage(&mut batch, Command::Deploy(bytes))
        .map_err(|r| format!("`{}`: {}", path.display(), r.message))?;
    if deployed.changed {
        let journeys: Vec<String> = runner.core.newest_journeys();
        for journey in journeys {
            runner
                .stage(&mut batch, Command::Operate(journey, Operation::Activate))
                .map_err(|r| r.message)?;
        }
        say!(
            "journey-runtime: deployed and activated `{}`",
            path.display()
        );
    }
    match runner.commit(batch, true) {
        Some(_) => Ok(()),
        None => Err("cannot store the deployment: the store refused the commit".into()),
    }
}

/// How long a stop waits for open requests.
const STOP_GRACE: Duration = Duration::from_secs(10);

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
