//! OTP-compatible servers written in Rust.
//!
//! A [`GenServer`] answers `gen_server:call/2,3` and `gen_server:cast/2` from any
//! BEAM node unchanged: the loop here understands `{'$gen_call', From, Request}`
//! and `{'$gen_cast', Request}` and replies the way `gen:reply/2` does. Anything
//! else goes to `handle_info`. The server loop owns the process; when a callback
//! asks to stop, `terminate` runs and the process exits with that reason.

use std::future::Future;

use crate::node::Node;
use crate::process::{Process, ProcessExit};
use crate::term::{self, Pid, Term};

/// What `handle_call` decided.
#[derive(Debug, Clone, PartialEq)]
pub enum CallReply {
    /// Reply now.
    Reply(Term),
    /// Reply later with [`Process::reply`] using the `From` term.
    NoReply,
    /// Reply, then stop with the reason.
    Stop { reason: Term, reply: Option<Term> },
}

/// What `handle_cast` / `handle_info` decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    Continue,
    Stop(Term),
}

/// A gen_server implemented in Rust.
pub trait GenServer: Send + 'static {
    fn handle_call(
        &mut self,
        request: Term,
        from: Term,
        process: &mut Process,
    ) -> impl Future<Output = CallReply> + Send;

    fn handle_cast(
        &mut self,
        _request: Term,
        _process: &mut Process,
    ) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }

    fn handle_info(
        &mut self,
        _msg: Term,
        _process: &mut Process,
    ) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }

    fn terminate(
        &mut self,
        _reason: &Term,
        _process: &mut Process,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Options for [`start`].
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Registers the server under this local name.
    pub name: Option<String>,
    /// Links the server to this pid.
    pub link: Option<Pid>,
    /// Trap exits (so `terminate` runs when a linked process dies).
    pub trap_exit: bool,
}

impl StartOptions {
    pub fn named(name: &str) -> Self {
        StartOptions {
            name: Some(name.to_string()),
            ..Default::default()
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Register(#[from] crate::node::RegisterError),
}

/// Starts `server` as a process on `node`.
pub fn start<S: GenServer>(node: &Node, server: S, opts: StartOptions) -> Result<Pid, StartError> {
    let pid = node.spawn_opts(
        move |process| async move { run(server, process).await },
        opts.link.clone(),
        opts.trap_exit,
    );
    // The Rust type stands where the BEAM names the callback module.
    node.set_initial_call(
        &pid,
        crate::node::info::Mfa::new(std::any::type_name::<S>(), "init", 1),
    );
    if let Some(name) = &opts.name {
        if let Err(e) = node.register(name, &pid) {
            node.exit_process(&pid, term::atom("normal"));
            return Err(e.into());
        }
    }
    Ok(pid)
}

/// The server loop; public so a process spawned by hand can become a server.
pub async fn run<S: GenServer>(mut server: S, mut process: Process) -> ProcessExit {
    loop {
        let msg = match process.receive().await {
            Ok(m) => m,
            Err(e) => return ProcessExit::from(e),
        };
        let flow = match classify(msg) {
            Incoming::Call(from, request) => {
                match server
                    .handle_call(request, from.clone(), &mut process)
                    .await
                {
                    CallReply::Reply(r) => {
                        process.reply(&from, r);
                        Flow::Continue
                    }
                    CallReply::NoReply => Flow::Continue,
                    CallReply::Stop { reason, reply } => {
                        if let Some(r) = reply {
                            process.reply(&from, r);
                        }
                        Flow::Stop(reason)
                    }
                }
            }
            Incoming::Cast(request) => server.handle_cast(request, &mut process).await,
            Incoming::Info(msg) => server.handle_info(msg, &mut process).await,
        };
        if let Flow::Stop(reason) = flow {
            server.terminate(&reason, &mut process).await;
            return ProcessExit::from(reason);
        }
    }
}

/// A message sorted by what the server does with it. The parts are moved out
/// of the message, not cloned: a request can be a 10 MB binary.
enum Incoming {
    Call(Term, Term),
    Cast(Term),
    Info(Term),
}

fn classify(msg: Term) -> Incoming {
    let is_call = |e: &[Term]| {
        matches!(e, [tag, from, _] if term::is_atom(tag, "$gen_call")
            && matches!(term::as_tuple(from), Some([Term::Pid(_), _])))
    };
    let is_cast = |e: &[Term]| matches!(e, [tag, _] if term::is_atom(tag, "$gen_cast"));
    match msg {
        Term::Tuple(t) if is_call(&t.elements) => match <[Term; 3]>::try_from(t.elements) {
            Ok([_, from, request]) => Incoming::Call(from, request),
            Err(elements) => Incoming::Info(term::tuple(elements)),
        },
        Term::Tuple(t) if is_cast(&t.elements) => match <[Term; 2]>::try_from(t.elements) {
            Ok([_, request]) => Incoming::Cast(request),
            Err(elements) => Incoming::Info(term::tuple(elements)),
        },
        other => Incoming::Info(other),
    }
}
