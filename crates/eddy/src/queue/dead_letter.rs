//! Moving messages between a queue and its dead-letter queue: dead-letter
//! (with `_failures`), requeue (with `_requeues`), and the entries a read
//! could not decode. Each move is one atomic engine call that carries the
//! stored bytes over with the record spliced in ([`super::history`]).

use super::history::Record;
use super::wire::{self, Message};
use super::Queue;
use crate::engine::{EntryId, QueueKeys, Transfer};
use crate::error::{Error, Result};

impl Queue {
    /// Log a move to the DLQ as done only if it was (an entry already gone
    /// from the queue moved nowhere).
    pub(super) fn log_dead_lettered(
        &self,
        what: &str,
        moves: &[(EntryId, String)],
        moved: &Result<Vec<Option<EntryId>>>,
    ) {
        for (i, (id, reason)) in moves.iter().enumerate() {
            match moved {
                Ok(to) if to.get(i).is_some_and(Option::is_some) => {
                    tracing::warn!(queue = %self.keys.name, %id, %reason, "{what} moved to the dead-letter queue")
                }
                Ok(_) => {
                    tracing::debug!(queue = %self.keys.name, %id, "{what} was no longer in the queue; nothing moved")
                }
                Err(e) => {
                    tracing::error!(queue = %self.keys.name, %id, %reason, error = %e, "{what} not dead-lettered; it stays pending")
                }
            }
        }
    }

    /// Move entries that could not be decoded to the DLQ, each with its
    /// reason.
    pub(super) async fn dead_letter_undecodable(
        &self,
        bad: &[Box<wire::Undecodable>],
    ) -> Result<()> {
        if bad.is_empty() {
            return Ok(());
        }
        let moves: Vec<Transfer> = bad
            .iter()
            .map(|u| u.transfer(&Record::failure(&u.reason)))
            .collect();
        let moved = self.engine().transfer(&self.keys, &self.dlq, &moves).await;
        let reasons: Vec<_> = bad.iter().map(|u| (u.id, u.reason.clone())).collect();
        self.log_dead_lettered("undecodable entry", &reasons, &moved);
        moved?;
        Ok(())
    }

    /// Move messages to the DLQ with a reason, atomically (appends
    /// `{timestamp, reason}` to `_failures`). Returns how many moved; ids no
    /// longer in the queue are skipped.
    pub async fn dead_letter(&self, ids: &[EntryId], reason: &str) -> Result<u64> {
        self.ensure_main("dead-letter")?;
        let messages = self.fetch(ids).await?;
        self.dead_letter_messages(&messages, reason).await
    }

    /// Like [`Queue::dead_letter`] for messages already in hand: no read first.
    pub async fn dead_letter_messages(&self, messages: &[Message], reason: &str) -> Result<u64> {
        self.ensure_main("dead-letter")?;
        let record = Record::failure(reason);
        let moves: Vec<Transfer> = messages
            .iter()
            .map(|m| m.transfer(wire::FAILURES, &record))
            .collect();
        self.transfer(&self.keys, &self.dlq, &moves).await
    }

    /// Move messages from this DLQ back to its queue, atomically (appends
    /// `{timestamp, from_dlq, to_queue}` to `_requeues`). Returns how many
    /// moved.
    pub async fn requeue(&self, ids: &[EntryId]) -> Result<u64> {
        if !self.is_dlq() {
            return Err(Error::invalid_argument(format!(
                "`{}` is not a dead-letter queue: only DLQ messages can be requeued",
                self.name()
            )));
        }
        let messages = self.fetch(ids).await?;
        self.requeue_messages(&messages).await
    }

    /// Requeue every message in this DLQ; returns how many moved.
    pub async fn requeue_all(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let batch = self.peek(500).await?;
            if batch.is_empty() {
                return Ok(total);
            }
            let moved = self.requeue_messages(&batch).await?;
            if moved == 0 {
                return Ok(total);
            }
            total += moved;
        }
    }

    async fn requeue_messages(&self, messages: &[Message]) -> Result<u64> {
        if !self.is_dlq() {
            return Err(Error::invalid_argument("only DLQ messages can be requeued"));
        }
        let record = Record::requeue(&self.keys.stream, &self.dlq.stream);
        let moves: Vec<Transfer> = messages
            .iter()
            .map(|m| m.transfer(wire::REQUEUES, &record))
            .collect();
        self.transfer(&self.keys, &self.dlq, &moves).await
    }

    pub(super) async fn transfer(
        &self,
        from: &QueueKeys,
        to: &QueueKeys,
        moves: &[Transfer],
    ) -> Result<u64> {
        if moves.is_empty() {
            return Ok(0);
        }
        let out = self.engine().transfer(from, to, moves).await?;
        Ok(out.iter().filter(|o| o.is_some()).count() as u64)
    }

    pub(super) fn ensure_main(&self, what: &str) -> Result<()> {
        if self.is_dlq() {
            return Err(Error::invalid_argument(format!(
                "cannot {what} from `{}`: it is already a dead-letter queue",
                self.name()
            )));
        }
        Ok(())
    }
}
