//! Bounded mailboxes: admission control in front of ractor's unbounded queues.
//!
//! An actor whose `Msg` is [`Admitted<M>`] can be sent to through a [`BoundedMailbox<M>`] with
//! `capacity` slots. Each queued message holds one slot until the actor takes it out with
//! [`Admitted::into_inner`] (or drops it). A sender either waits for a slot
//! ([`BoundedMailbox::send`], backpressure) or gets [`MailboxError::Full`] back with its message
//! ([`BoundedMailbox::try_send`]). Memory stays bounded however fast senders are.
//!
//! The mailbox addresses the actor through a [`ChildRef`], so it keeps working across restarts;
//! messages queued to a crashed incarnation are dropped and their slots released.

use std::sync::Arc;
use std::time::Duration;

use ractor::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::supervise::ChildRef;

/// A message that holds a mailbox slot until it is taken out.
#[derive(Debug)]
pub struct Admitted<M> {
    message: M,
    _slot: OwnedSemaphorePermit,
}

impl<M> Admitted<M> {
    /// Takes the message out and frees its slot.
    pub fn into_inner(self) -> M {
        self.message
    }

    /// The message, still holding its slot.
    pub fn get(&self) -> &M {
        &self.message
    }
}

/// Why a message was not enqueued. The message is handed back.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError<M> {
    /// Every slot is taken: the receiver is behind. Retry later or shed load.
    #[error("mailbox full: {capacity} messages already queued")]
    Full {
        /// The message that was not sent.
        message: M,
        /// The mailbox's capacity.
        capacity: usize,
    },
    /// No slot freed up within the timeout.
    #[error("mailbox full: no slot freed within {timeout:?}")]
    Timeout {
        /// The message that was not sent.
        message: M,
        /// How long the sender waited.
        timeout: Duration,
    },
    /// The receiving actor is not running.
    #[error("mailbox closed: the receiving actor is not running")]
    Closed {
        /// The message that was not sent (ractor hands it back except on a type mismatch).
        message: Option<M>,
    },
}

impl<M> MailboxError<M> {
    /// The message that was not sent, if it could be recovered.
    pub fn into_message(self) -> Option<M> {
        match self {
            Self::Full { message, .. } | Self::Timeout { message, .. } => Some(message),
            Self::Closed { message } => message,
        }
    }
}

/// The sending side of a bounded mailbox. Cheap to clone; all clones share the slots.
#[derive(Debug)]
pub struct BoundedMailbox<M: Message> {
    target: ChildRef<Admitted<M>>,
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl<M: Message> Clone for BoundedMailbox<M> {
    fn clone(&self) -> Self {
        Self {
            target: self.target.clone(),
            slots: Arc::clone(&self.slots),
            capacity: self.capacity,
        }
    }
}

impl<M: Message> BoundedMailbox<M> {
    /// A mailbox of `capacity` slots (at least 1) in front of `target`.
    pub fn new(target: ChildRef<Admitted<M>>, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            target,
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Messages queued and not yet taken out.
    pub fn queued(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// Enqueues `message` if a slot is free now.
    pub fn try_send(&self, message: M) -> Result<(), MailboxError<M>> {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => self.deliver(message, slot),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(MailboxError::Full {
                message,
                capacity: self.capacity,
            }),
        }
    }

    /// Enqueues `message`, waiting for a free slot (backpressure).
    pub async fn send(&self, message: M) -> Result<(), MailboxError<M>> {
        match Arc::clone(&self.slots).acquire_owned().await {
            Ok(slot) => self.deliver(message, slot),
            Err(_) => Err(MailboxError::Closed {
                message: Some(message),
            }),
        }
    }

    /// Enqueues `message`, waiting at most `timeout` for a free slot.
    pub async fn send_timeout(&self, message: M, timeout: Duration) -> Result<(), MailboxError<M>> {
        match tokio::time::timeout(timeout, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(slot)) => self.deliver(message, slot),
            Ok(Err(_)) => Err(MailboxError::Closed {
                message: Some(message),
            }),
            Err(_) => Err(MailboxError::Timeout { message, timeout }),
        }
    }

    fn deliver(&self, message: M, slot: OwnedSemaphorePermit) -> Result<(), MailboxError<M>> {
        let admitted = Admitted {
            message,
            _slot: slot,
        };
        self.target
            .cast(admitted)
            .map_err(|err| MailboxError::Closed {
                message: admitted_message(err),
            })
    }
}

fn admitted_message<M>(err: ractor::MessagingErr<Admitted<M>>) -> Option<M> {
    match err {
        ractor::MessagingErr::SendErr(admitted) => Some(admitted.into_inner()),
        ractor::MessagingErr::ChannelClosed | ractor::MessagingErr::InvalidActorType => None,
    }
}
