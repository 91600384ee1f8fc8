//! Group commit of the webhooks handled: each request hands its record (delivery id, event
//! ids, dead letter) to one task, which writes whatever has gathered in one transaction and
//! then answers every request in it. A store commit per webhook bounded the route at about
//! 1 000 a second on SQLite (its single writer, shared with the consumer's batches, and the
//! cost of each commit); grouped, one commit serves many concurrent webhooks.

use crate::store::{HandledWebhook, Store};
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot};

/// Most records written in one transaction.
const MOST_AT_ONCE: usize = 256;

type Pending = (HandledWebhook, oneshot::Sender<Result<(), String>>);

/// The handle requests record through.
pub struct Recorder {
    queue: mpsc::Sender<Pending>,
}

impl Recorder {
    /// Starts the writing task on the current runtime; it ends when the recorder is dropped.
    /// `outbox_written` is woken after a dead letter was written.
    pub fn start(store: Arc<dyn Store>, outbox_written: Arc<Notify>) -> Recorder {
        let (queue, pending) = mpsc::channel(4 * MOST_AT_ONCE);
        tokio::spawn(write(store, pending, outbox_written));
        Recorder { queue }
    }

    /// Records one delivery; returns once its transaction committed.
    pub async fn record(&self, handled: HandledWebhook) -> Result<(), String> {
        let stopped = || "the webhook recorder has stopped".to_string();
        let (done, committed) = oneshot::channel();
        self.queue
            .send((handled, done))
            .await
            .map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }
}

async fn write(
    store: Arc<dyn Store>,
    mut pending: mpsc::Receiver<Pending>,
    outbox_written: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(MOST_AT_ONCE);
    while pending.recv_many(&mut batch, MOST_AT_ONCE).await > 0 {
        let (handled, waiting): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let result = store
            .record_webhooks(&handled)
            .await
            .map_err(|e| format!("the store: {e}"));
        if result.is_ok() && handled.iter().any(|h| h.dead_letter.is_some()) {
            outbox_written.notify_one();
        }
        for w in waiting {
            let _ = w.send(result.clone());
        }
    }
}
