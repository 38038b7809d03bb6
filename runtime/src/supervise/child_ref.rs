//! A stable address for a supervised child that follows its restarts.

use std::sync::{Arc, PoisonError, RwLock};

use ractor::{ActorRef, Message, MessagingErr};

/// A cloneable reference to a supervised child that always points at its current incarnation.
///
/// A restart creates a new actor and a new [`ActorRef`]; the supervisor updates every
/// `ChildRef` made by [`ChildSpec::actor`](super::ChildSpec::actor), so holders keep sending to
/// the live actor. Messages sent while the child is down fail with a clear error.
pub struct ChildRef<M: Message> {
    current: Arc<RwLock<Option<ActorRef<M>>>>,
}

impl<M: Message> std::fmt::Debug for ChildRef<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildRef")
            .field("current", &self.get().map(|a| a.get_id()))
            .finish()
    }
}

impl<M: Message> Clone for ChildRef<M> {
    fn clone(&self) -> Self {
        Self {
            current: Arc::clone(&self.current),
        }
    }
}

impl<M: Message> Default for ChildRef<M> {
    fn default() -> Self {
        Self {
            current: Arc::new(RwLock::new(None)),
        }
    }
}

impl<M: Message> ChildRef<M> {
    /// A reference that points at nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A reference fixed to one actor (for unsupervised actors).
    pub fn fixed(actor: ActorRef<M>) -> Self {
        let r = Self::new();
        r.set(Some(actor));
        r
    }

    /// The current incarnation, if the child is running.
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Points the reference at a new incarnation (or at nothing while the child is down).
    pub fn set(&self, actor: Option<ActorRef<M>>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = actor;
    }

    /// Sends a message to the current incarnation.
    pub fn cast(&self, msg: M) -> Result<(), MessagingErr<M>> {
        match self.get() {
            Some(actor) => actor.cast(msg),
            None => Err(MessagingErr::SendErr(msg)),
        }
    }
}
