//! Ordering per key: messages with the same ordering key run one at a
//! time, in the order this consumer received them. Each message's task
//! waits for the completion of the one dispatched before it with the same
//! key; the loop keeps only the last completion per key.

use super::{HashMap, Settle};

type Chain = futures::future::Shared<tokio::sync::oneshot::Receiver<()>>;

/// Per ordering key, the completion of the last message dispatched.
#[derive(Default)]
pub(super) struct Chains {
    /// Numbers the links, so that a finished message only clears its key
    /// if no later one took its place.
    next: u64,
    last: HashMap<String, (u64, Chain)>,
}

/// One message's place in its key's chain.
pub(super) struct Link {
    key: String,
    seq: u64,
    before: Option<Chain>,
    done: tokio::sync::oneshot::Sender<()>,
}

/// A link whose turn has come.
pub(super) struct Turn {
    key: String,
    seq: u64,
    done: tokio::sync::oneshot::Sender<()>,
}

impl Settle {
    /// Queue a message with ordering key `key` behind the last one
    /// dispatched with it.
    pub(super) fn link(&self, key: String) -> Link {
        use futures::FutureExt;
        let (done, rx) = tokio::sync::oneshot::channel::<()>();
        let mut chains = Self::lock(&self.chains);
        chains.next += 1;
        let seq = chains.next;
        let before = chains
            .last
            .insert(key.clone(), (seq, rx.shared()))
            .map(|(_, before)| before);
        Link {
            key,
            seq,
            before,
            done,
        }
    }

    /// The message is settled: let the next one with its key run.
    pub(super) fn unlink(&self, turn: Turn) {
        let _ = turn.done.send(());
        let mut chains = Self::lock(&self.chains);
        if chains
            .last
            .get(&turn.key)
            .is_some_and(|(s, _)| *s == turn.seq)
        {
            chains.last.remove(&turn.key);
        }
    }
}

impl Link {
    /// Wait for the message before this one (with the same key) to be
    /// settled. (If its task was dropped, its sender went with it: the
    /// wait ends too.)
    pub(super) async fn wait(self) -> Turn {
        if let Some(before) = self.before {
            let _ = before.await;
        }
        Turn {
            key: self.key,
            seq: self.seq,
            done: self.done,
        }
    }
}
