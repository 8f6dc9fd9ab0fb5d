//! What one file's evaluation may spend ([`EvalLimits`]), how a load is cancelled
//! ([`LoadCancel`]), and the checks that hold an evaluation to both ([`Budget`]).
//!
//! Each BUILD or `.star` file is evaluated under its own budget:
//! - **time**: the wall time of its own evaluation, not counting the evaluations it waits on
//!   (another package's, through `target_info`; a `.star` file's, through `load`);
//! - **memory**: the bytes of its Starlark heap, where strings, lists, tuples and structs live.
//!   What starlark keeps outside that heap (a dict's table, a big integer's digits) is not
//!   counted.
//!
//! Where the budgets are checked:
//! - before every statement, through the evaluator's statement hook (so a loop that doubles a
//!   string stops within one doubling past the budget);
//! - every 1,000 function calls and loop steps, through starlark's cancellation check: this
//!   covers comprehensions, whose steps are no statements;
//! - before each `*` and `+` makes a string, a list or a tuple: the parser rewrites those
//!   operators into calls of the checked built-ins `_weft_mul` and `_weft_add` (see
//!   [`CHECKED_OPERATORS`]), which refuse a result that would not fit before it is allocated,
//!   so `"x" * (1 << 30)` fails at once. `x *= n` is refused when the file is parsed (no hook
//!   sees it before it allocates); `x = x * n` does the same and is checked.
//!
//! A cancelled load ([`LoadCancel::cancel`], when the client goes away) stops at the next of
//! these checks, and before any further file is evaluated.
//!
//! What the checks do not cover: one built-in call that makes a large value out of small
//! ones (`list(range(n))`, `"".join([s] * n)`) allocates before the next check sees it, and the
//! statements of the bundled prelude's own functions are not hooked (their loops are bounded
//! by what BUILD files pass them). The starlark crate itself says that its limits are
//! best-effort; a panic inside it is caught and reported as an error in the file (see
//! `Session::run`).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use starlark::codemap::{FileSpan, FileSpanRef};
use starlark::eval::{BeforeStmtFuncDyn, Evaluator};
use starlark::values::Value;
use starlark::values::list::ListRef;
use starlark::values::tuple::TupleRef;

use super::error::{EvalBudget, NativeError, SourceLocation, line_number};

/// How much one BUILD or `.star` file's evaluation may spend. See the [module
/// documentation](self) for what is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalLimits {
    /// How long one file's evaluation may run, not counting the evaluations it waits on.
    /// Default: 5 s ([`TIME_SETTING`](super::TIME_SETTING) in the daemon's `config.toml`).
    pub time: Duration,
    /// How many bytes one file's Starlark heap may hold. Default: 512 MiB ([`MEMORY_SETTING`](super::MEMORY_SETTING)
    /// in the daemon's `config.toml`, in MiB).
    pub memory: usize,
}

impl Default for EvalLimits {
    fn default() -> EvalLimits {
        EvalLimits {
            time: Duration::from_secs(5),
            memory: 512 << 20,
        }
    }
}

/// The operators the parser turns into calls of checked built-ins, and those built-ins' names.
pub(crate) const CHECKED_OPERATORS: [(&str, &str); 2] = [("*", "_weft_mul"), ("+", "_weft_add")];

/// Cancels a load from another thread: the evaluation in progress stops at its next check,
/// and the load ends with [`FrontendErrorKind::Cancelled`](super::FrontendErrorKind). Clones
/// share one flag.
#[derive(Debug, Clone, Default)]
pub struct LoadCancel(Arc<AtomicBool>);

impl LoadCancel {
    /// A load that nothing has cancelled yet.
    pub fn new() -> LoadCancel {
        LoadCancel::default()
    }

    /// Cancels every load this token (or a clone of it) was given.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why an evaluation was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// It went past a budget.
    Over(EvalBudget),
    /// Its load was cancelled.
    Cancelled,
}

/// The budget of one file's evaluation, shared by the checks that run during it.
pub(crate) struct Budget {
    limits: EvalLimits,
    cancel: LoadCancel,
    started: Instant,
    /// Time spent in the evaluations this one waited on.
    waited: Cell<Duration>,
    /// The first reason the evaluation was stopped for; later checks repeat it.
    stop: Cell<Option<Stop>>,
    /// The statement that runs now (the last one the statement hook saw).
    statement: RefCell<Option<FileSpan>>,
}

impl Budget {
    /// The budget of an evaluation that starts now.
    pub(crate) fn start(limits: EvalLimits, cancel: LoadCancel) -> Budget {
        Budget {
            limits,
            cancel,
            started: Instant::now(),
            waited: Cell::new(Duration::ZERO),
            stop: Cell::new(None),
            statement: RefCell::new(None),
        }
    }

    /// How long the evaluation has run, with the evaluations it waited on.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Leaves `nested` (the time of an evaluation this one waited on) out of its time.
    pub(crate) fn waited(&self, nested: Duration) {
        self.waited.set(self.waited.get() + nested);
    }

    /// Why the evaluation was stopped, if it was.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        self.stop.get()
    }

    /// Where the evaluation is: the statement that runs now, when the hook has seen one.
    pub(crate) fn location(&self) -> Option<SourceLocation> {
        let statement = self.statement.borrow();
        let span = statement.as_ref()?;
        Some(SourceLocation {
            file: span.filename().to_owned(),
            line: line_number(span.resolve_span().begin.line),
        })
    }

    /// Checks every budget, the heap holding `heap_bytes`; the first reason to stop is kept.
    pub(crate) fn check(&self, heap_bytes: usize) -> Option<Stop> {
        if let Some(stop) = self.stop.get() {
            return Some(stop);
        }
        let stop = if self.cancel.is_cancelled() {
            Stop::Cancelled
        } else if heap_bytes > self.limits.memory {
            Stop::Over(EvalBudget::Memory {
                limit: self.limits.memory,
                held: heap_bytes,
                value: None,
            })
        } else if self.started.elapsed().saturating_sub(self.waited.get()) > self.limits.time {
            Stop::Over(EvalBudget::Time {
                limit: self.limits.time,
            })
        } else {
            return None;
        };
        self.stop.set(Some(stop));
        Some(stop)
    }

    /// Checks that a new value of `value_bytes` fits beside the `heap_bytes` the heap holds.
    fn charge(&self, heap_bytes: usize, value_bytes: usize) -> Option<Stop> {
        if let Some(stop) = self.check(heap_bytes) {
            return Some(stop);
        }
        if heap_bytes.saturating_add(value_bytes) <= self.limits.memory {
            return None;
        }
        let stop = Stop::Over(EvalBudget::Memory {
            limit: self.limits.memory,
            held: heap_bytes,
            value: Some(value_bytes),
        });
        self.stop.set(Some(stop));
        Some(stop)
    }
}

/// The error that aborts an evaluation stopped for `stop`; the evaluation's caller turns it
/// into a [`FrontendError`](super::FrontendError) from [`Budget::stopped`].
pub(crate) fn stop_error(stop: Stop) -> starlark::Error {
    let message = match stop {
        Stop::Over(budget) => format!("over the evaluation budget: {budget:?}"),
        Stop::Cancelled => "the load was cancelled".to_owned(),
    };
    starlark::Error::new_native(NativeError(message))
}

/// The statement hook: checks the budget before each statement, then notes the statement.
pub(crate) struct StatementCheck(pub(crate) std::rc::Rc<Budget>);

impl<'e> BeforeStmtFuncDyn<'e> for StatementCheck {
    fn call<'v>(
        &mut self,
        span: FileSpanRef<'_>,
        _continued: bool,
        eval: &mut Evaluator<'v, '_, 'e>,
    ) -> starlark::Result<()> {
        // Checked before the statement is noted, so that a stop points at the statement that
        // went past the budget rather than at the next one.
        if let Some(stop) = self.0.check(eval.heap().allocated_bytes()) {
            return Err(stop_error(stop));
        }
        *self.0.statement.borrow_mut() = Some(span.to_file_span());
        Ok(())
    }
}

/// Checks, before `lhs * rhs` or `lhs + rhs` (`op`) runs, that the string, list or tuple it
/// would make fits in the budget of the evaluation in progress.
pub(crate) fn check_operator<'v>(
    budget: &Budget,
    op: Operator,
    lhs: Value<'v>,
    rhs: Value<'v>,
    heap_bytes: usize,
) -> Result<(), starlark::Error> {
    let Some(bytes) = result_size(op, lhs, rhs) else {
        return Ok(());
    };
    match budget.charge(heap_bytes, bytes) {
        Some(stop) => Err(stop_error(stop)),
        None => Ok(()),
    }
}

/// An operator whose result [`check_operator`] sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operator {
    /// `*`: repetition of a string, list or tuple.
    Mul,
    /// `+`: concatenation.
    Add,
}

/// The bytes a string, list or tuple result of `lhs op rhs` would take, when it is one.
fn result_size<'v>(op: Operator, lhs: Value<'v>, rhs: Value<'v>) -> Option<usize> {
    let slot = std::mem::size_of::<Value<'_>>();
    match op {
        Operator::Mul => {
            let (sequence, times) = match (rhs.unpack_i32(), lhs.unpack_i32()) {
                (Some(times), _) => (lhs, times),
                (None, Some(times)) => (rhs, times),
                (None, None) => return None,
            };
            let times = usize::try_from(times).unwrap_or(0);
            Some(sequence_bytes(sequence, slot)?.saturating_mul(times))
        }
        Operator::Add => {
            Some(sequence_bytes(lhs, slot)?.saturating_add(sequence_bytes(rhs, slot)?))
        }
    }
}

/// The bytes of a string's text, or of a list's or tuple's slots (`slot` bytes each).
fn sequence_bytes(value: Value<'_>, slot: usize) -> Option<usize> {
    if let Some(text) = value.unpack_str() {
        return Some(text.len());
    }
    if let Some(list) = ListRef::from_value(value) {
        return Some(list.len().saturating_mul(slot));
    }
    TupleRef::from_value(value).map(|tuple| tuple.len().saturating_mul(slot))
}

#[cfg(test)]
mod tests {
    use starlark::values::Heap;

    use super::*;

    fn limits(memory: usize) -> EvalLimits {
        EvalLimits {
            time: Duration::from_secs(60),
            memory,
        }
    }

    #[test]
    fn results_are_sized_before_they_are_made() {
        Heap::temp(|heap| {
            let s = heap.alloc("abc");
            let n = heap.alloc(4);
            let list = heap.alloc(vec![1, 2]);
            let slot = std::mem::size_of::<Value<'_>>();
            let cases = [
                (Operator::Mul, s, n, Some(12)),
                (Operator::Mul, n, s, Some(12)),
                (Operator::Mul, list, n, Some(8 * slot)),
                (Operator::Mul, s, heap.alloc(-3), Some(0)),
                (Operator::Mul, n, n, None),
                (Operator::Add, s, s, Some(6)),
                (Operator::Add, list, list, Some(4 * slot)),
                (Operator::Add, n, n, None),
                (Operator::Add, s, n, None),
            ];
            for (op, lhs, rhs, expected) in cases {
                assert_eq!(result_size(op, lhs, rhs), expected, "{lhs} {op:?} {rhs}");
            }
        });
    }

    #[test]
    fn a_value_that_does_not_fit_is_refused_and_the_stop_kept() {
        let budget = Budget::start(limits(1000), LoadCancel::new());
        assert_eq!(budget.charge(100, 900), None, "exactly full fits");
        assert_eq!(
            budget.charge(100, 901),
            Some(Stop::Over(EvalBudget::Memory {
                limit: 1000,
                held: 100,
                value: Some(901),
            }))
        );
        assert!(
            matches!(budget.check(0), Some(Stop::Over(_))),
            "a stopped evaluation stays stopped"
        );
    }

    #[test]
    fn cancel_time_and_memory_stop_an_evaluation() {
        let cancel = LoadCancel::new();
        let budget = Budget::start(limits(1000), cancel.clone());
        assert_eq!(budget.check(10), None);
        cancel.cancel();
        assert_eq!(budget.check(10), Some(Stop::Cancelled));

        let budget = Budget::start(limits(1000), LoadCancel::new());
        assert!(matches!(
            budget.check(1001),
            Some(Stop::Over(EvalBudget::Memory { held: 1001, .. }))
        ));

        let quick = EvalLimits {
            time: Duration::from_millis(30),
            memory: 1000,
        };
        let budget = Budget::start(quick, LoadCancel::new());
        // Time spent waiting on another evaluation does not count.
        budget.waited(Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(budget.check(0), None);
        let budget = Budget::start(quick, LoadCancel::new());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(
            budget.check(0),
            Some(Stop::Over(EvalBudget::Time {
                limit: Duration::from_millis(30)
            }))
        );
    }
}
