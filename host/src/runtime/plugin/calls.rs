//! Calls into a live instance: instantiation and `init`, `on-changes` and
//! `on-cache-events` under the plugin's limits, and what a trap or a deadline
//! leaves behind.

use super::*;

impl Plugin {
    pub(super) async fn instantiate(&self) -> Result<Live, PluginError> {
        let init_error = |message: String| PluginError::Init {
            plugin: self.label(),
            message,
        };
        let state = PluginState::new(
            &self.name,
            self.config.clone(),
            self.limits,
            self.log_budget.clone(),
            self.crypto.clone(),
        );
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_hostcall_fuel(self.limits.copy_out_bytes());
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.ticks_left == 0 {
                return Ok(UpdateDeadline::Interrupt);
            }
            state.ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);
        self.log_budget.start_call();
        let started = self.pre.instantiate_and_init(&mut store);
        // Instantiation and `init` share one wall-clock deadline.
        let started: wasmtime::Result<_> =
            match tokio::time::timeout(self.limits.call_timeout, started).await {
                Ok(started) => started,
                Err(_) => return Err(init_error(self.timed_out())),
            };
        let (exports, init) = started.map_err(|e| {
            init_error(describe_trap(
                &e,
                &self.limits,
                store.data().limits.refused.as_deref(),
            ))
        })?;
        self.keep_crypto_refusals(&mut store);
        init.map_err(|e| {
            init_error(format!(
                "trapped: {}",
                describe_trap(&e, &self.limits, store.data().limits.refused.as_deref())
            ))
        })?
        .map_err(|message| init_error(bounded(message)))?;
        Ok(Live { store, exports })
    }

    /// Why a call was stopped at its wall-clock deadline.
    pub(super) fn timed_out(&self) -> String {
        format!(
            "exceeded its time limit of {} ms (wall clock, including time blocked in host calls); \
             the call was stopped and its instance discarded",
            self.limits.call_timeout.as_millis()
        )
    }

    /// Moves the store's refused crypto calls to the plugin's list.
    pub(super) fn keep_crypto_refusals(&self, store: &mut Store<PluginState>) {
        let refused = std::mem::take(&mut store.data_mut().crypto_refusals);
        if !refused.is_empty() {
            self.crypto_refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(refused);
        }
    }

    /// Hands a batch of cache events to the plugin and returns its requests.
    /// A plugin built against contract 0.1.0 has no `on-cache-events` and
    /// answers nothing.
    pub async fn on_cache_events(
        &self,
        batch: &[CacheEvent],
    ) -> Result<Vec<CacheAction>, PluginError> {
        let mut guard = self.ready().await?;
        let live = guard.as_mut().expect("ready() leaves a live instance");
        let call = live.exports.on_cache_events(&mut live.store, batch);
        let outcome = tokio::time::timeout(self.limits.call_timeout, call).await;
        let actions = self.settle(&mut guard, outcome)?;
        if actions.len() > self.limits.max_actions {
            return Err(PluginError::PlanTooLarge {
                plugin: self.label(),
                message: format!(
                    "{} cache requests, the limit is {}",
                    actions.len(),
                    self.limits.max_actions
                ),
            });
        }
        Ok(actions)
    }

    /// Hands a batch to the plugin and returns its plan.
    pub async fn on_changes(&self, batch: &[RowChange]) -> Result<Vec<Action>, PluginError> {
        let mut guard = self.ready().await?;
        let live = guard.as_mut().expect("ready() leaves a live instance");
        let call = live.exports.on_changes(&mut live.store, batch);
        let outcome = tokio::time::timeout(self.limits.call_timeout, call).await;
        let actions = self.settle(&mut guard, outcome)?;
        self.check_size(&actions)?;
        Ok(actions)
    }

    /// Locks the live instance (instantiating one when there is none) and
    /// arms its limits for a call.
    pub(super) async fn ready(&self) -> Result<MutexGuard<'_, Option<Live>>, PluginError> {
        let mut guard = self.live.lock().await;
        if guard.is_none() {
            *guard = Some(self.instantiate().await?);
        }
        let live = guard.as_mut().expect("just set");
        live.store.set_epoch_deadline(1);
        live.store.data_mut().ticks_left = self.limits.deadline_ticks();
        live.store.data_mut().limits.refused = None;
        self.log_budget.start_call();
        Ok(guard)
    }

    /// Turns a call's outcome into a result; a trap or a call stopped at its
    /// deadline discards the instance.
    pub(super) fn settle<T>(
        &self,
        guard: &mut MutexGuard<'_, Option<Live>>,
        outcome: Result<wasmtime::Result<Result<T, String>>, tokio::time::error::Elapsed>,
    ) -> Result<T, PluginError> {
        let Ok(outcome) = outcome else {
            // The call future was dropped mid-call: the instance cannot be
            // entered again.
            **guard = None;
            return Err(PluginError::TimedOut {
                plugin: self.label(),
                message: self.timed_out(),
            });
        };
        let live = guard.as_mut().expect("ready() leaves a live instance");
        self.keep_crypto_refusals(&mut live.store);
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(PluginError::Rejected {
                plugin: self.label(),
                message: bounded(message),
            }),
            Err(trap) => {
                let refused = live.store.data_mut().limits.refused.take();
                let copy_bound = live.store.hostcall_fuel();
                **guard = None;
                if copied_too_much(&trap) {
                    return Err(PluginError::PlanTooLarge {
                        plugin: self.label(),
                        message: format!(
                            "it passed more than {} bytes to the host in one call (its plan's \
                             keys and values, {} bytes per action, or a host call's arguments; \
                             the bound follows max_plan_mb and max_actions); the call was \
                             stopped and its instance discarded",
                            copy_bound, COPY_OUT_BYTES_PER_ACTION
                        ),
                    });
                }
                if matches!(
                    trap.downcast_ref::<wasmtime::Trap>(),
                    Some(wasmtime::Trap::Interrupt)
                ) {
                    return Err(PluginError::TimedOut {
                        plugin: self.label(),
                        message: describe_trap(&trap, &self.limits, None),
                    });
                }
                Err(PluginError::Trap {
                    plugin: self.label(),
                    message: describe_trap(&trap, &self.limits, refused.as_deref()),
                })
            }
        }
    }

    pub(super) fn check_size(&self, actions: &[Action]) -> Result<(), PluginError> {
        let too_large = |message: String| PluginError::PlanTooLarge {
            plugin: self.label(),
            message,
        };
        if actions.len() > self.limits.max_actions {
            return Err(too_large(format!(
                "{} actions, the limit is {}",
                actions.len(),
                self.limits.max_actions
            )));
        }
        let bytes: usize = actions
            .iter()
            .map(|action| match &action.effect {
                Effect::Set(write) => write.key.len() + write.value.len(),
                Effect::Delete(key) => key.len(),
                Effect::Expire(expiry) => expiry.key.len(),
            })
            .sum();
        if bytes > self.limits.max_plan_bytes {
            return Err(too_large(format!(
                "{bytes} bytes of keys and values, the limit is {}",
                self.limits.max_plan_bytes
            )));
        }
        Ok(())
    }
}

/// Whether the runtime stopped copying data out of the plugin at
/// [`Limits::copy_out_bytes`]. The runtime's error type for it is private,
/// so its message is what tells (a test plugin whose plan aliases one
/// buffer a hundred thousand times keeps this honest).
fn copied_too_much(trap: &wasmtime::Error) -> bool {
    trap.root_cause()
        .to_string()
        .contains("fuel allocated for hostcalls")
}

/// Names the limit behind a trap when there is one (`refused`: the growth
/// the plugin's resource limiter refused just before).
fn describe_trap(trap: &wasmtime::Error, limits: &Limits, refused: Option<&str>) -> String {
    match (trap.downcast_ref::<wasmtime::Trap>(), refused) {
        (Some(wasmtime::Trap::Interrupt), _) => format!(
            "exceeded its time limit of {} ms (epoch deadline)",
            limits.call_timeout.as_millis()
        ),
        (_, Some(refused)) => bounded(format!(
            "ran out of memory: a growth past its limits was refused ({refused}), then it failed: {}",
            trap.root_cause()
        )),
        _ => trap_text(trap),
    }
}

/// Longest function name a trap's backtrace shows.
const MAX_FRAME_NAME: usize = 200;

/// A trap as text, bounded: its root cause, then its backtrace. The plugin
/// chooses its function names (a component's name section may hold
/// megabytes for one), so the backtrace is rendered here frame by frame,
/// each name cut, never through its own `Display`.
fn trap_text(trap: &wasmtime::Error) -> String {
    let cause = bounded(trap.root_cause().to_string());
    let Some(backtrace) = trap.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return cause;
    };
    let frames: Vec<String> = backtrace
        .frames()
        .iter()
        .enumerate()
        .map(|(at, frame)| {
            let name = frame.func_name().unwrap_or("<unnamed>");
            format!(
                "{at}: {}",
                super::super::log_budget::cut(name, MAX_FRAME_NAME)
            )
        })
        .collect();
    bounded(format!("{cause}; wasm backtrace: {}", frames.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trap_in_a_function_with_a_huge_name_stays_short() {
        // A plugin names its functions as it likes: here a megabyte.
        let name = "n".repeat(1 << 20);
        let wat = format!(
            "(module (func ${name} (export \"go\") unreachable) \
             (func $calls (export \"outer\") call ${name}))"
        );
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, wat::parse_str(wat).expect("valid text"))
            .expect("compiles");
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("instantiates");
        let outer = instance
            .get_typed_func::<(), ()>(&mut store, "outer")
            .expect("exported");
        let trap = outer.call(&mut store, ()).expect_err("traps");
        assert!(
            format!("{trap:#}").len() > 1 << 20,
            "the runtime's own text carries the whole name"
        );
        let text = trap_text(&trap);
        assert!(text.len() <= MAX_PLUGIN_TEXT, "{} bytes", text.len());
        assert!(text.contains("unreachable"), "{text}");
        assert!(text.contains("wasm backtrace: 0: nnn"), "{text}");
    }
}
