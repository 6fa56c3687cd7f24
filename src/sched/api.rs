//! The scheduler script surface: `sched::step_lr`, `sched::cosine_annealing_lr`, … constructors
//! (PyTorch's names and keywords), the `LRScheduler` type (`step`, `get_last_lr`, `state_dict`,
//! `load_state_dict`), and [`LRScheduler::step_with_engine`] for the Trainer.
use super::cycles::{CyclicMode, CyclicOptions, OneCycleOptions};
use super::plateau::Plateau;
use super::{Kind, LRScheduler, LrFn, SchedulerCore};
use crate::optim::Optimizer;
use crate::script::convert::{err, number, Opts, OrScript, RResult};
use crate::script::registry::Registry;
use rhai::{Array, Dynamic, Engine, FnPtr, Map, NativeCallContext, AST, FLOAT, INT};
use std::rc::Rc;

fn to_f64(d: Dynamic) -> Result<f64, String> {
    if let Ok(x) = d.as_float() {
        return Ok(x);
    }
    d.as_int().map(|i| i as f64).map_err(|t| format!("a scheduler function must return a number, got {t}"))
}

fn fn_ptr(f: &LrFn) -> Result<&FnPtr, String> {
    f.downcast_ref::<FnPtr>().ok_or_else(|| "internal error: scheduler function is not a Rhai function".to_string())
}

/// Runs scheduler functions from inside a native call.
fn ctx_eval<'a>(ctx: &'a NativeCallContext<'a>) -> impl FnMut(&LrFn, i64) -> Result<f64, String> + 'a {
    move |f, e| {
        let r: Dynamic = fn_ptr(f)?.call_within_context(ctx, (e as INT,)).map_err(|e| e.to_string())?;
        to_f64(r)
    }
}

impl LRScheduler {
    /// One step from Rust (the Trainer): Rhai functions of `lambda_lr` / `multiplicative_lr` run
    /// with `engine` and `ast` (the script that built the scheduler). `metric` is required by
    /// ReduceLROnPlateau ([`LRScheduler::is_plateau`]) and ignored by the others.
    pub fn step_with_engine(&self, engine: &Engine, ast: &AST, metric: Option<f64>) -> Result<(), String> {
        let mut eval = |f: &LrFn, e: i64| -> Result<f64, String> {
            let r: Dynamic = fn_ptr(f)?.call(engine, ast, (e as INT,)).map_err(|e| e.to_string())?;
            to_f64(r)
        };
        self.step(metric, &mut eval)
    }
}

/// Option `key`: a number or an array of numbers (one per param group); whether it was an array.
fn numbers(d: &Dynamic, what: &str, key: &str) -> RResult<(Vec<f64>, bool)> {
    let bad = || err(format!("{what}: option '{key}' must be a number or an array of numbers, got {}", d.type_name()));
    if let Some(a) = d.read_lock::<Array>() {
        return Ok((a.iter().map(|v| number(v, what).map_err(|_| bad())).collect::<RResult<Vec<f64>>>()?, true));
    }
    Ok((vec![number(d, what).map_err(|_| bad())?], false))
}

fn req<T>(v: Option<T>, what: &str, key: &str) -> RResult<T> {
    v.ok_or_else(|| err(format!("{what}: option '{key}' is required")))
}

fn positive(v: i64, what: &str, key: &str) -> RResult<i64> {
    if v <= 0 {
        return Err(err(format!("{what}: {key} must be a positive integer, got {v}")));
    }
    Ok(v)
}

fn non_negative(v: i64, what: &str, key: &str) -> RResult<i64> {
    if v < 0 {
        return Err(err(format!("{what}: {key} must be >= 0, got {v}")));
    }
    Ok(v)
}

fn plain(opt: Optimizer, kind: Kind) -> RResult<LRScheduler> {
    SchedulerCore::new(opt, kind, &mut super::no_eval).map(LRScheduler::new).or_script()
}

fn step_lr(opt: Optimizer, m: &Map) -> RResult<LRScheduler> {
    let w = "sched::step_lr";
    let o = Opts::new(m, w, &["step_size", "gamma"])?;
    let step_size = positive(req(o.i64_opt("step_size")?, w, "step_size")?, w, "step_size")?;
    plain(opt, Kind::Step { step_size, gamma: o.f64_or("gamma", 0.1)? })
}

fn multi_step_lr(opt: Optimizer, m: &Map) -> RResult<LRScheduler> {
    let w = "sched::multi_step_lr";
    let o = Opts::new(m, w, &["milestones", "gamma"])?;
    let mut milestones = req(o.ints_opt("milestones")?, w, "milestones")?;
    milestones.sort();
    plain(opt, Kind::MultiStep { milestones, gamma: o.f64_or("gamma", 0.1)? })
}

fn exponential_lr(opt: Optimizer, m: &Map) -> RResult<LRScheduler> {
    let w = "sched::exponential_lr";
    let o = Opts::new(m, w, &["gamma"])?;
    plain(opt, Kind::Exponential { gamma: req(o.f64_opt("gamma")?, w, "gamma")? })
}

fn cosine_annealing_lr(opt: Optimizer, m: &Map) -> RResult<LRScheduler> {
    let w = "sched::cosine_annealing_lr";
    let o = Opts::new(m, w, &["T_max", "eta_min"])?;
    let t_max = positive(req(o.i64_opt("T_max")?, w, "T_max")?, w, "T_max")?;
    plain(opt, Kind::Cosine { t_max, eta_min: o.f64_or("eta_min", 0.0)? })
}

fn warm_restarts(opt: Optimizer, m: &Map) -> RResult<LRScheduler> {
    let w = "sched::cosine_annealing_warm_restarts";
    let o = Opts::new(m, w, &["T_0", "T_mult", "eta_min"])?;
    let t_0 = positive(req(o.i64_opt("T_0")?, w, "T_0")?, w, "T_0")?;
    let t_mult = positive(o.i64_or("T_mult", 1)?, w, "T_mult")?;
    plain(opt, Kind::WarmRestarts { t_0, t_i: t_0, t_mult, eta_min: o.f64_or("eta_min", 0.0)?, t_cur: -1 })
}

fn linear_lr(opt: Optimizer, m: &Map) -> RResult<LRScheduler> {
    let w = "sched::linear_lr";
    let o = Opts::new(m, w, &["start_factor", "end_factor", "total_iters"])?;
    let start_factor = o.f64_or("start_factor", 1.0 / 3.0)?;
    let end_factor = o.f64_or("end_factor", 1.0)?;
    if start_factor > 1.0 || start_factor <= 0.0 {
        return Err(err(format!(
            "{w}: start_factor expected to be greater than 0 and less or equal to 1, got {start_factor}"
        )));
    }
    if !(0.0..=1.0).contains(&end_factor) {
        return Err(err(format!("{w}: end_factor expected to be between 0 and 1, got {end_factor}")));
    }
    let total_iters = non_negative(o.i64_or("total_iters", 5)?, w, "total_iters")?;
    plain(opt, Kind::Linear { start_factor, end_factor, total_iters })
}

fn constant_lr(opt: Optimizer, m: &Map) -> RResult<LRScheduler> {
    let w = "sched::constant_lr";
    let o = Opts::new(m, w, &["factor", "total_iters"])?;
    let factor = o.f64_or("factor", 1.0 / 3.0)?;
    if !(0.0..=1.0).contains(&factor) {
        return Err(err(format!("{w}: factor expected to be between 0 and 1, got {factor}")));
    }
    let total_iters = non_negative(o.i64_or("total_iters", 5)?, w, "total_iters")?;
    plain(opt, Kind::Constant { factor, total_iters })
}

fn polynomial_lr(opt: Optimizer, m: &Map) -> RResult<LRScheduler> {
    let w = "sched::polynomial_lr";
    let o = Opts::new(m, w, &["total_iters", "power"])?;
    let total_iters = non_negative(o.i64_or("total_iters", 5)?, w, "total_iters")?;
    plain(opt, Kind::Polynomial { total_iters, power: o.f64_or("power", 1.0)? })
}

fn list_or(o: &Opts, key: &str, what: &str, default: f64) -> RResult<Vec<f64>> {
    match o.get(key) {
        Some(d) => Ok(numbers(d, what, key)?.0),
        None => Ok(vec![default]),
    }
}

fn one_cycle_lr(opt: Optimizer, m: &Map) -> RResult<LRScheduler> {
    let w = "sched::one_cycle_lr";
    let o = Opts::new(
        m,
        w,
        &[
            "max_lr",
            "total_steps",
            "epochs",
            "steps_per_epoch",
            "pct_start",
            "anneal_strategy",
            "cycle_momentum",
            "base_momentum",
            "max_momentum",
            "div_factor",
            "final_div_factor",
            "three_phase",
        ],
    )?;
    let max_lr = numbers(req(o.get("max_lr"), w, "max_lr")?, w, "max_lr")?.0;
    let total_steps = match (o.i64_opt("total_steps")?, o.i64_opt("epochs")?, o.i64_opt("steps_per_epoch")?) {
        (Some(t), _, _) => positive(t, w, "total_steps")?,
        (None, Some(e), Some(s)) => positive(e, w, "epochs")? * positive(s, w, "steps_per_epoch")?,
        _ => return Err(err(format!("{w}: you must define either total_steps OR (epochs AND steps_per_epoch)"))),
    };
    let anneal_cos = match o.str_or("anneal_strategy", "cos")?.as_str() {
        "cos" => true,
        "linear" => false,
        s => return Err(err(format!("{w}: anneal_strategy must be one of 'cos' or 'linear', instead got '{s}'"))),
    };
    let opts = OneCycleOptions {
        max_lr,
        total_steps,
        pct_start: o.f64_or("pct_start", 0.3)?,
        anneal_cos,
        cycle_momentum: o.bool_or("cycle_momentum", true)?,
        base_momentum: list_or(&o, "base_momentum", w, 0.85)?,
        max_momentum: list_or(&o, "max_momentum", w, 0.95)?,
        div_factor: o.f64_or("div_factor", 25.0)?,
        final_div_factor: o.f64_or("final_div_factor", 1e4)?,
        three_phase: o.bool_or("three_phase", false)?,
    };
    SchedulerCore::one_cycle(opt, opts).map(LRScheduler::new).map_err(|e| err(format!("{w}: {e}")))
}

fn cyclic_lr(opt: Optimizer, m: &Map) -> RResult<LRScheduler> {
    let w = "sched::cyclic_lr";
    let o = Opts::new(
        m,
        w,
        &[
            "base_lr",
            "max_lr",
            "step_size_up",
            "step_size_down",
            "mode",
            "gamma",
            "cycle_momentum",
            "base_momentum",
            "max_momentum",
        ],
    )?;
    let mode = match o.str_or("mode", "triangular")?.as_str() {
        "triangular" => CyclicMode::Triangular,
        "triangular2" => CyclicMode::Triangular2,
        "exp_range" => CyclicMode::ExpRange,
        s => return Err(err(format!("{w}: mode must be 'triangular', 'triangular2' or 'exp_range', got '{s}'"))),
    };
    let opts = CyclicOptions {
        base_lr: numbers(req(o.get("base_lr"), w, "base_lr")?, w, "base_lr")?.0,
        max_lr: numbers(req(o.get("max_lr"), w, "max_lr")?, w, "max_lr")?.0,
        step_size_up: o.f64_or("step_size_up", 2000.0)?,
        step_size_down: o.f64_opt("step_size_down")?,
        mode,
        gamma: o.f64_or("gamma", 1.0)?,
        cycle_momentum: o.bool_or("cycle_momentum", true)?,
        base_momentum: list_or(&o, "base_momentum", w, 0.8)?,
        max_momentum: list_or(&o, "max_momentum", w, 0.9)?,
    };
    SchedulerCore::cyclic(opt, opts).map(LRScheduler::new).map_err(|e| err(format!("{w}: {e}")))
}

fn plateau(opt: Optimizer, m: &Map) -> RResult<LRScheduler> {
    let w = "sched::reduce_lr_on_plateau";
    let o =
        Opts::new(m, w, &["mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps"])?;
    let (min_lr, is_list) = match o.get("min_lr") {
        Some(d) => numbers(d, w, "min_lr")?,
        None => (vec![0.0], false),
    };
    let p = Plateau::new(
        &opt,
        &o.str_or("mode", "min")?,
        o.f64_or("factor", 0.1)?,
        o.i64_or("patience", 10)?,
        o.f64_or("threshold", 1e-4)?,
        &o.str_or("threshold_mode", "rel")?,
        o.i64_or("cooldown", 0)?,
        min_lr,
        is_list,
        o.f64_or("eps", 1e-8)?,
    )
    .map_err(|e| err(format!("{w}: {e}")))?;
    SchedulerCore::plateau(opt, p).map(LRScheduler::new).or_script()
}

/// One function for every group, or an array with one per group.
fn functions(opt: &Optimizer, d: &Dynamic, what: &str) -> RResult<Vec<LrFn>> {
    let n = opt.num_groups();
    let one = |v: &Dynamic| -> RResult<LrFn> {
        v.clone()
            .try_cast::<FnPtr>()
            .map(|f| Rc::new(f) as LrFn)
            .ok_or_else(|| err(format!("{what}: lr_lambda should be a function, but got {}", v.type_name())))
    };
    if let Some(a) = d.read_lock::<Array>() {
        if a.len() != n {
            return Err(err(format!("{what}: expected {n} lr_lambdas, but got {}", a.len())));
        }
        return a.iter().map(one).collect();
    }
    Ok(vec![one(d)?; n])
}

fn lambda(ctx: &NativeCallContext, opt: Optimizer, d: Dynamic, multiplicative: bool) -> RResult<LRScheduler> {
    let what = if multiplicative { "sched::multiplicative_lr" } else { "sched::lambda_lr" };
    let fns = functions(&opt, &d, what)?;
    let kind = if multiplicative { Kind::Multiplicative { fns } } else { Kind::Lambda { fns } };
    let mut eval = ctx_eval(ctx);
    SchedulerCore::new(opt, kind, &mut eval).map(LRScheduler::new).or_script()
}

fn schedulers(a: &Array, what: &str) -> RResult<Vec<LRScheduler>> {
    a.iter()
        .enumerate()
        .map(|(i, v)| {
            v.clone()
                .try_cast::<LRScheduler>()
                .ok_or_else(|| err(format!("{what}: element {i} is a {}, not an LRScheduler", v.type_name())))
        })
        .collect()
}

fn scheduler_map(s: &LRScheduler) -> RResult<Map> {
    let v = s.state_dict().or_script()?;
    rhai::serde::to_dynamic(v)?.try_cast::<Map>().ok_or_else(|| err("state_dict: not a map"))
}

macro_rules! ctor {
    ($reg:expr, $name:literal, $f:expr, $doc:expr) => {
        $reg.volatile("sched", $name, "optimizer, opts", $doc, |o: Optimizer, m: Map| $f(o, &m));
    };
    ($reg:expr, $name:literal, $f:expr, $doc:expr, optional) => {
        $reg.volatile("sched", $name, "optimizer, opts", $doc, |o: Optimizer, m: Map| $f(o, &m));
        $reg.volatile("sched", $name, "optimizer", $doc, |o: Optimizer| $f(o, &Map::new()));
    };
}

const PRELUDE: &str =
    "let w = torch::zeros([2], #{requires_grad: true});\nlet opt = optim::sgd([w], #{lr: 0.1, momentum: 0.9});\n";

fn doc(text: &str, body: &str) -> String {
    format!("{text}\n\n```rhai\n{PRELUDE}{body}\n```")
}

pub fn register(reg: &mut Registry) {
    reg.global_module().set_custom_type::<LRScheduler>("LRScheduler");

    let d = doc("Multiplies the learning rate by `gamma` every `step_size` steps (torch.optim.lr_scheduler.StepLR). Options: step_size (required), gamma (0.1).", "let s = sched::step_lr(opt, #{step_size: 2, gamma: 0.5});\nfor i in 0..4 { opt.step(); s.step(); }\nprint(s.get_last_lr());");
    ctor!(reg, "step_lr", step_lr, &d);
    let d = doc("Multiplies the learning rate by `gamma` at each milestone (MultiStepLR). Options: milestones (required), gamma (0.1).", "let s = sched::multi_step_lr(opt, #{milestones: [2, 3], gamma: 0.1});\nfor i in 0..4 { s.step(); }\nprint(s.get_last_lr());");
    ctor!(reg, "multi_step_lr", multi_step_lr, &d);
    let d = doc(
        "Multiplies the learning rate by `gamma` every step (ExponentialLR). Options: gamma (required).",
        "let s = sched::exponential_lr(opt, #{gamma: 0.9});\ns.step();\nprint(s.get_last_lr());",
    );
    ctor!(reg, "exponential_lr", exponential_lr, &d);
    let d = doc("Cosine annealing from the initial learning rate to `eta_min` over `T_max` steps, computed in PyTorch's recursive form (CosineAnnealingLR). Options: T_max (required), eta_min (0).", "let s = sched::cosine_annealing_lr(opt, #{T_max: 10, eta_min: 0.001});\nfor i in 0..5 { s.step(); }\nprint(s.get_last_lr());");
    ctor!(reg, "cosine_annealing_lr", cosine_annealing_lr, &d);
    let d = doc("Cosine annealing with warm restarts every `T_0` steps, the period growing by `T_mult` (CosineAnnealingWarmRestarts). Options: T_0 (required), T_mult (1), eta_min (0).", "let s = sched::cosine_annealing_warm_restarts(opt, #{T_0: 3, T_mult: 2});\nfor i in 0..4 { s.step(); }\nprint(s.get_last_lr());");
    ctor!(reg, "cosine_annealing_warm_restarts", warm_restarts, &d);
    let d = doc("The 1cycle policy (OneCycleLR): warm up to `max_lr`, then anneal far below the start, cycling momentum (or Adam's beta1) the other way. Options: max_lr (required; a number or one per group), total_steps or epochs + steps_per_epoch, pct_start (0.3), anneal_strategy (\"cos\" or \"linear\"), cycle_momentum (true), base_momentum (0.85), max_momentum (0.95), div_factor (25), final_div_factor (1e4), three_phase (false).", "let s = sched::one_cycle_lr(opt, #{max_lr: 1.0, total_steps: 10});\nfor i in 0..5 { opt.step(); s.step(); }\nprint(s.get_last_lr());\nprint(opt.param_groups[0].momentum);");
    ctor!(reg, "one_cycle_lr", one_cycle_lr, &d);
    let d = doc("Scales the learning rate linearly from `start_factor` to `end_factor` over `total_iters` steps (LinearLR). Options: start_factor (1/3), end_factor (1.0), total_iters (5).", "let s = sched::linear_lr(opt, #{start_factor: 0.1, total_iters: 4});\nfor i in 0..2 { s.step(); }\nprint(s.get_last_lr());");
    ctor!(reg, "linear_lr", linear_lr, &d, optional);
    let d = doc("Scales the learning rate by `factor` until `total_iters` steps have passed (ConstantLR). Options: factor (1/3), total_iters (5).", "let s = sched::constant_lr(opt, #{factor: 0.5, total_iters: 2});\nprint(s.get_last_lr());\nfor i in 0..2 { s.step(); }\nprint(s.get_last_lr());");
    ctor!(reg, "constant_lr", constant_lr, &d, optional);
    let d = doc("Polynomial decay of the learning rate to zero over `total_iters` steps (PolynomialLR). Options: total_iters (5), power (1.0).", "let s = sched::polynomial_lr(opt, #{total_iters: 4, power: 2.0});\nfor i in 0..2 { s.step(); }\nprint(s.get_last_lr());");
    ctor!(reg, "polynomial_lr", polynomial_lr, &d, optional);
    let d = doc("Cycles the learning rate between `base_lr` and `max_lr` (CyclicLR), momentum the other way. Options: base_lr and max_lr (required; a number or one per group), step_size_up (2000), step_size_down (= up), mode (\"triangular\", \"triangular2\", \"exp_range\"), gamma (1.0), cycle_momentum (true), base_momentum (0.8), max_momentum (0.9).", "let s = sched::cyclic_lr(opt, #{base_lr: 0.01, max_lr: 0.1, step_size_up: 4});\nfor i in 0..3 { s.step(); }\nprint(s.get_last_lr());");
    ctor!(reg, "cyclic_lr", cyclic_lr, &d);
    let d = doc("Reduces the learning rate by `factor` when the metric passed to `step(metric)` stops improving for `patience` steps (ReduceLROnPlateau). Options: mode (\"min\"/\"max\"), factor (0.1), patience (10), threshold (1e-4), threshold_mode (\"rel\"/\"abs\"), cooldown (0), min_lr (0; a number or one per group), eps (1e-8).", "let s = sched::reduce_lr_on_plateau(opt, #{patience: 1, factor: 0.5});\nfor loss in [1.0, 1.0, 1.0, 1.0] { s.step(loss); }\nprint(s.get_last_lr());");
    ctor!(reg, "reduce_lr_on_plateau", plateau, &d, optional);

    let d = doc("The learning rate is the initial one times `lr_lambda(epoch)` (LambdaLR); give one function or an array with one per param group.", "let s = sched::lambda_lr(opt, |epoch| 0.95 ** epoch);\ns.step();\nprint(s.get_last_lr());");
    reg.volatile(
        "sched",
        "lambda_lr",
        "optimizer, lr_lambda",
        &d,
        |ctx: NativeCallContext, o: Optimizer, f: Dynamic| lambda(&ctx, o, f, false),
    );
    let d = doc("Each step multiplies the learning rate by `lr_lambda(epoch)` (MultiplicativeLR); give one function or an array with one per param group.", "let s = sched::multiplicative_lr(opt, |epoch| 0.9);\ns.step();\nprint(s.get_last_lr());");
    reg.volatile(
        "sched",
        "multiplicative_lr",
        "optimizer, lr_lambda",
        &d,
        |ctx: NativeCallContext, o: Optimizer, f: Dynamic| lambda(&ctx, o, f, true),
    );

    let d = doc("Runs `schedulers` one after another, switching at the `milestones` steps (SequentialLR). All schedulers must be on `optimizer`.", "let warm = sched::linear_lr(opt, #{start_factor: 0.1, total_iters: 2});\nlet decay = sched::exponential_lr(opt, #{gamma: 0.9});\nlet s = sched::sequential_lr(opt, [warm, decay], [2]);\nfor i in 0..4 { s.step(); }\nprint(s.get_last_lr());");
    reg.volatile(
        "sched",
        "sequential_lr",
        "optimizer, schedulers, milestones",
        &d,
        |ctx: NativeCallContext, o: Optimizer, s: Array, m: Array| -> RResult<LRScheduler> {
            let w = "sched::sequential_lr";
            let scheds = schedulers(&s, w)?;
            let milestones = crate::script::convert::ints(&m, w)?;
            let mut eval = ctx_eval(&ctx);
            SchedulerCore::sequential(o, scheds, milestones, &mut eval)
                .map(LRScheduler::new)
                .map_err(|e| err(format!("{w}: {e}")))
        },
    );
    let d = doc("Steps every scheduler in `schedulers` at each step, so their factors multiply (ChainedScheduler).", "let a = sched::constant_lr(opt, #{factor: 0.5, total_iters: 2});\nlet b = sched::exponential_lr(opt, #{gamma: 0.9});\nlet s = sched::chained_scheduler([a, b]);\nfor i in 0..3 { s.step(); }\nprint(s.get_last_lr());");
    reg.volatile("sched", "chained_scheduler", "schedulers", &d, |s: Array| -> RResult<LRScheduler> {
        let w = "sched::chained_scheduler";
        SchedulerCore::chained(schedulers(&s, w)?).map(LRScheduler::new).map_err(|e| err(format!("{w}: {e}")))
    });

    let d = doc("Advances the schedule by one step and writes the new learning rates into the optimizer. ReduceLROnPlateau takes the monitored metric: `s.step(val_loss)`.", "let s = sched::step_lr(opt, #{step_size: 1, gamma: 0.5});\nopt.step();\ns.step();\nprint(opt.param_groups[0].lr);\nlet p = sched::reduce_lr_on_plateau(opt);\np.step(0.5);");
    reg.func("", "step", "self", &d, |ctx: NativeCallContext, s: &mut LRScheduler| -> RResult<()> {
        let mut eval = ctx_eval(&ctx);
        s.step(None, &mut eval).or_script()
    });
    reg.func("", "step", "self, metric", &d, |ctx: NativeCallContext, s: &mut LRScheduler, m: FLOAT| -> RResult<()> {
        let mut eval = ctx_eval(&ctx);
        s.step(Some(m), &mut eval).or_script()
    });
    reg.func("", "step", "self, metric", &d, |ctx: NativeCallContext, s: &mut LRScheduler, m: INT| -> RResult<()> {
        let mut eval = ctx_eval(&ctx);
        s.step(Some(m as f64), &mut eval).or_script()
    });
    reg.func(
        "",
        "step",
        "self, metric",
        &d,
        |ctx: NativeCallContext, s: &mut LRScheduler, m: crate::tensor::Tensor| -> RResult<()> {
            let v = m.f_double_value(&[]).map_err(|e| err(crate::tensor::TensorError::from(e)))?;
            let mut eval = ctx_eval(&ctx);
            s.step(Some(v), &mut eval).or_script()
        },
    );

    let d = doc(
        "The learning rates of the last step, one per param group (get_last_lr()).",
        "let s = sched::exponential_lr(opt, #{gamma: 0.5});\ns.step();\nprint(s.get_last_lr());",
    );
    reg.func("", "get_last_lr", "self", &d, |s: &mut LRScheduler| -> Array {
        s.get_last_lr().into_iter().map(Dynamic::from_float).collect()
    });
    let d = doc(
        "The scheduler's step counter (last_epoch).",
        "let s = sched::exponential_lr(opt, #{gamma: 0.5});\ns.step();\nprint(s.last_epoch);",
    );
    reg.getter("last_epoch", &d, |s: &mut LRScheduler| -> RResult<INT> {
        Ok(s.0.try_borrow().map_err(|_| err("the scheduler is busy"))?.last_epoch)
    });
    let d = doc(
        "The optimizer this scheduler drives.",
        "let s = sched::exponential_lr(opt, #{gamma: 0.5});\nprint(s.optimizer.name);",
    );
    reg.getter("optimizer", &d, |s: &mut LRScheduler| s.optimizer().or_script());
    let d = doc("The scheduler's state as a map (state_dict()); restore it with `load_state_dict`, on a scheduler of the same kind over an optimizer with the same number of param groups.", "let s = sched::step_lr(opt, #{step_size: 2});\ns.step();\nlet sd = s.state_dict();\nlet s2 = sched::step_lr(opt, #{step_size: 2});\ns2.load_state_dict(sd);\nprint(s2.last_epoch);");
    reg.func("", "state_dict", "self", &d, |s: &mut LRScheduler| scheduler_map(s));
    reg.func("", "load_state_dict", "self, state", &d, |s: &mut LRScheduler, m: Map| -> RResult<()> {
        let v: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(m))?;
        s.load_state_dict(&v).or_script()
    });
    let d = doc(
        "A one-line description: class, step and learning rates.",
        "print(sched::exponential_lr(opt, #{gamma: 0.5}));",
    );
    let describe = |s: &mut LRScheduler| -> String {
        let e = s.0.try_borrow().map(|c| c.last_epoch).unwrap_or(0);
        format!("{}(last_epoch={e}, lr={:?})", s.name(), s.get_last_lr())
    };
    reg.func("", "to_string", "self", &d, describe);
    reg.func("", "to_debug", "self", &d, describe);
}
