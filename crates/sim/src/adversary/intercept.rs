//! One intercepting wrapper: an honest actor inside, and [`Hooks`] that
//! see each incoming message and input before it does (and may keep it
//! from it, acting themselves) and get a word after every event it
//! handled. Everything else is forwarded as it is, inspection included
//! (`as_any` reaches the actor inside), so a scenario's targeted attack
//! is the one hook it changes.
//!
//! [`Deaf`] is the hook that drops the messages a predicate picks.

use crate::engine::{Actor, ActorCx, BoxActor};
use byzscale_core::Addr;
use std::any::Any;

/// Which event the actor inside just handled ([`Hooks::after`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Start,
    Input,
    Message,
    Timer,
}

/// What an [`Intercept`] does around the actor inside. Every method has
/// the honest default: pass everything on, do nothing after.
pub trait Hooks<M, I, O> {
    /// An incoming message from `from`: `Some` passes it (or another) to
    /// the actor inside, `None` keeps it from it.
    fn message(
        &mut self,
        _inner: &dyn Actor<M, I, O>,
        _from: Addr,
        msg: M,
        _cx: &mut ActorCx<'_, M, O>,
    ) -> Option<M> {
        Some(msg)
    }
    /// An input: `Some` passes it on, `None` keeps it from the actor inside.
    fn input(
        &mut self,
        _inner: &dyn Actor<M, I, O>,
        input: I,
        _cx: &mut ActorCx<'_, M, O>,
    ) -> Option<I> {
        Some(input)
    }
    /// After every event (also one whose message or input was kept from
    /// the actor inside).
    fn after(&mut self, _event: Event, _inner: &dyn Actor<M, I, O>, _cx: &mut ActorCx<'_, M, O>) {}
}

/// An actor inside and the [`Hooks`] around it.
pub struct Intercept<M, I, O, H> {
    inner: BoxActor<M, I, O>,
    hooks: H,
}

impl<M, I, O, H: Hooks<M, I, O>> Intercept<M, I, O, H> {
    pub fn new(inner: BoxActor<M, I, O>, hooks: H) -> Self {
        Intercept { inner, hooks }
    }
    pub fn hooks(&self) -> &H {
        &self.hooks
    }
    pub fn inner(&self) -> &dyn Actor<M, I, O> {
        &*self.inner
    }
}

impl<M, I, O, H: Hooks<M, I, O>> Actor<M, I, O> for Intercept<M, I, O, H> {
    fn start(&mut self, cx: &mut ActorCx<'_, M, O>) {
        self.inner.start(cx);
        self.hooks.after(Event::Start, &*self.inner, cx);
    }
    fn input(&mut self, input: I, cx: &mut ActorCx<'_, M, O>) {
        if let Some(input) = self.hooks.input(&*self.inner, input, cx) {
            self.inner.input(input, cx);
        }
        self.hooks.after(Event::Input, &*self.inner, cx);
    }
    fn message(&mut self, from: Addr, msg: M, cx: &mut ActorCx<'_, M, O>) {
        if let Some(msg) = self.hooks.message(&*self.inner, from, msg, cx) {
            self.inner.message(from, msg, cx);
        }
        self.hooks.after(Event::Message, &*self.inner, cx);
    }
    fn timer(&mut self, key: u64, cx: &mut ActorCx<'_, M, O>) {
        self.inner.timer(key, cx);
        self.hooks.after(Event::Timer, &*self.inner, cx);
    }
    fn as_any(&self) -> Option<&dyn Any> {
        self.inner.as_any()
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        self.inner.as_any_mut()
    }
}

/// Deaf to the messages the predicate picks (a Byzantine node ignoring
/// them); the rest reaches the actor inside.
pub struct Deaf<M>(pub fn(&M) -> bool);

impl<M, I, O> Hooks<M, I, O> for Deaf<M> {
    fn message(
        &mut self,
        _: &dyn Actor<M, I, O>,
        _: Addr,
        msg: M,
        _: &mut ActorCx<'_, M, O>,
    ) -> Option<M> {
        (!(self.0)(&msg)).then_some(msg)
    }
}

impl<M: 'static> Deaf<M> {
    /// `inner`, deaf to what `pick` picks.
    pub fn around<I: 'static, O: 'static>(
        inner: BoxActor<M, I, O>,
        pick: fn(&M) -> bool,
    ) -> BoxActor<M, I, O> {
        Box::new(Intercept::new(inner, Deaf(pick)))
    }
}
