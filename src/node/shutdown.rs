//! Shutdown hooks and cut connections.
//!
//! What it owns:
//! - the node's shutdown hooks: work a service must do while its node is
//!   still connected, before a graceful stop closes everything (a
//!   `Horde.DynamicSupervisor` member hands its children over, as Horde's
//!   members do on `:init.stop()`). [`Node::stop`] and [`Node::shutdown`] run
//!   every hook, all at once, each for at most its own limit, and close the
//!   node after the last; [`Node::halt`] closes at once, as `erlang:halt/0`.
//! - the cut peers ([`Node::block`]): their connection is dropped and every
//!   connect to or from them is refused until [`Node::unblock`], so a test
//!   can make a partition among Rust nodes that the next send does not heal.
//!
//! What it must never do: let a hook hold the node open past its limit, or
//! run a hook twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use super::Node;

/// What a hook returns: the work to await.
pub type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

type Hook = Box<dyn FnOnce() -> HookFuture + Send>;

/// A registered hook, for [`Node::remove_shutdown_hook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownHook(u64);

/// The hooks of one node.
#[derive(Default)]
pub(crate) struct Hooks {
    next: u64,
    hooks: Vec<(u64, String, Duration, Hook)>,
    /// Taken by a stop: no hook runs twice, and none registers after.
    taken: bool,
    /// Set once the hooks of the stop that took them have all returned.
    done: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The peers this node refuses (see [`Node::block`]).
pub(crate) type Blocked = Mutex<std::collections::HashSet<String>>;

impl Node {
    /// Registers `hook`, run by a graceful stop of this node ([`Node::stop`],
    /// [`Node::shutdown`]) before any connection closes; the stop waits for
    /// it at most `limit`. Hooks run concurrently. A hook registered once the
    /// node is stopping is not run (it is dropped).
    pub fn on_shutdown<F>(
        &self,
        name: impl Into<String>,
        limit: Duration,
        hook: impl FnOnce() -> F + Send + 'static,
    ) -> ShutdownHook
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Ok(mut h) = self.inner.hooks.lock() else {
            return ShutdownHook(0);
        };
        h.next += 1;
        let id = h.next;
        if !h.taken {
            let hook: Hook = Box::new(move || Box::pin(hook()));
            h.hooks.push((id, name.into(), limit, hook));
        }
        ShutdownHook(id)
    }

    /// Removes a hook that has not run (its service ended on its own).
    pub fn remove_shutdown_hook(&self, hook: ShutdownHook) -> bool {
        let Ok(mut h) = self.inner.hooks.lock() else {
            return false;
        };
        let before = h.hooks.len();
        h.hooks.retain(|(id, ..)| *id != hook.0);
        h.hooks.len() != before
    }

    /// Runs every hook once, concurrently, each bounded by its limit. A
    /// second caller (a `stop` after a `shutdown`) waits for the first's
    /// hooks to finish.
    pub(crate) async fn run_shutdown_hooks(&self) {
        enum Turn {
            Run(
                Vec<(u64, String, Duration, Hook)>,
                tokio::sync::watch::Sender<bool>,
            ),
            Wait(Option<tokio::sync::watch::Receiver<bool>>),
        }
        let turn = {
            let Ok(mut h) = self.inner.hooks.lock() else {
                return;
            };
            if h.taken {
                Turn::Wait(h.done.clone())
            } else {
                h.taken = true;
                let (tx, rx) = tokio::sync::watch::channel(false);
                h.done = Some(rx);
                Turn::Run(std::mem::take(&mut h.hooks), tx)
            }
        };
        let (hooks, tx) = match turn {
            Turn::Run(hooks, tx) => (hooks, tx),
            Turn::Wait(done) => {
                if let Some(mut done) = done {
                    let _ = done.wait_for(|d| *d).await;
                }
                return;
            }
        };
        let node = self.name().to_string();
        let runs = hooks.into_iter().map(|(_, name, limit, hook)| {
            let node = node.clone();
            async move {
                if tokio::time::timeout(limit, hook()).await.is_err() {
                    tracing::warn!(%node, hook = %name, ?limit, "shutdown hook did not finish in time");
                }
            }
        });
        futures_join_all(runs).await;
        let _ = tx.send(true);
    }

    /// Whether hooks are waiting to run.
    pub(crate) fn has_shutdown_hooks(&self) -> bool {
        self.inner
            .hooks
            .lock()
            .map(|h| !h.hooks.is_empty() || h.taken)
            .unwrap_or(false)
    }

    /// Cuts this node off from `nodes`, all at once: nothing more is sent
    /// to them (not even on a connection still open), their connections
    /// are dropped, and every connect to or from them is refused (links and
    /// monitors see `noconnection`) until [`Node::unblock`]. A partition
    /// that holds, where a plain [`Node::disconnect`] is healed by the next
    /// send. All at once, so no news of one cut reaches another of `nodes`
    /// before it is cut too.
    pub fn block(&self, nodes: &[&str]) {
        if let Ok(mut b) = self.inner.blocked.lock() {
            b.extend(nodes.iter().map(|n| n.to_string()));
            self.inner
                .any_blocked
                .store(!b.is_empty(), std::sync::atomic::Ordering::Relaxed);
        }
        for n in nodes {
            self.disconnect(n);
        }
    }

    /// Ends [`Node::block`] for `nodes`: they may connect again.
    pub fn unblock(&self, nodes: &[&str]) {
        if let Ok(mut b) = self.inner.blocked.lock() {
            for n in nodes {
                b.remove(*n);
            }
            self.inner
                .any_blocked
                .store(!b.is_empty(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(crate) fn is_blocked(&self, node: &str) -> bool {
        // Every remote send asks: the set is looked at only while it holds
        // someone.
        if !self
            .inner
            .any_blocked
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return false;
        }
        self.inner
            .blocked
            .lock()
            .map(|b| b.contains(node))
            .unwrap_or(false)
    }
}

/// Awaits every future (tokio has no `join_all`; a `JoinSet` would need
/// `'static` spawns of borrowed work).
async fn futures_join_all<F: Future<Output = ()>>(fs: impl Iterator<Item = F>) {
    let mut fs: Vec<Pin<Box<F>>> = fs.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        fs.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if fs.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    async fn node(name: &str) -> Node {
        crate::node::test_node(name, "hooks").await
    }

    #[tokio::test]
    async fn stop_runs_each_hook_once_before_closing_and_bounds_a_slow_one() {
        let n = node("hooks_a").await;
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let probe = n.clone();
        n.on_shutdown("counts", Duration::from_secs(5), move || async move {
            // Still running: the node has not closed yet.
            assert!(!probe.inner.shutting_down.load(Ordering::Relaxed));
            r.fetch_add(1, Ordering::SeqCst);
        });
        n.on_shutdown("never ends", Duration::from_millis(50), || {
            std::future::pending::<()>()
        });
        let removed = n.on_shutdown("removed", Duration::from_secs(1), || async {
            panic!("a removed hook ran")
        });
        assert!(n.remove_shutdown_hook(removed));
        n.stop(Duration::from_secs(1)).await;
        n.stop(Duration::from_secs(1)).await;
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(n.inner.shutting_down.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn halt_runs_no_hook() {
        let n = node("hooks_b").await;
        n.on_shutdown("must not run", Duration::from_secs(1), || async {
            panic!("halt ran a hook")
        });
        n.halt();
        assert!(n.inner.shutting_down.load(Ordering::Relaxed));
    }
}
