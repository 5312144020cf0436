//! Where plug-in work runs: compiling a module, instantiating a plug-in and every guest
//! call. It is CPU work that can take up to a call's fuel, so the node runs it off the
//! async workers; the whole-node simulator runs it on the calling task instead, so that
//! nothing of a simulated node runs on another thread and a seed replays exactly, by
//! construction rather than by the blocking pool happening to answer in time.
//!
//! The choice is made once, when the node is built ([`crate::broker::BrokerConfig`]'s
//! `plugin_executor`), and carried by the [`WasmEngine`](super::WasmEngine) every module,
//! plug-in and call goes through.

use tokio::task::JoinError;

/// Where plug-in work runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PluginExecutor {
    /// tokio's blocking pool (the node): a long guest call never stalls the tasks serving
    /// requests.
    #[default]
    BlockingPool,
    /// On the calling task, to the end, before it yields (the simulator): nothing runs on
    /// another thread, so the order of events depends on the seed alone.
    Inline,
}

impl PluginExecutor {
    /// Runs `work` where this executor runs plug-in work; an error only if the blocking
    /// task panicked or was cancelled (a runtime shutting down).
    pub async fn run<T, F>(self, work: F) -> Result<T, JoinError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self {
            Self::BlockingPool => tokio::task::spawn_blocking(work).await,
            Self::Inline => Ok(work()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inline work runs on the calling thread; blocking-pool work on another one.
    #[test]
    fn inline_runs_on_the_calling_thread_and_the_pool_elsewhere() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let caller = std::thread::current().id();
            let inline = PluginExecutor::Inline
                .run(|| std::thread::current().id())
                .await
                .unwrap();
            assert_eq!(inline, caller);
            let pooled = PluginExecutor::BlockingPool
                .run(|| std::thread::current().id())
                .await
                .unwrap();
            assert_ne!(pooled, caller);
        });
    }
}
