//! Module scripts as values inside another script: Lightning's `MyModel(**hparams)` and
//! `MyModel.load_from_checkpoint(path, **overrides)`, where the "class" is a module script file.
//! `nn::load_module("encoder.rhai", #{hidden: 64})` builds one (its `hparams()` overlaid with the
//! given map, then `init`); `nn::load_from_checkpoint("model.rhai", "best.ckpt", #{lr: 1e-4})`
//! builds it with the hyperparameters saved in the checkpoint (overrides win) and loads the
//! checkpoint's weights. The value is the module's own `this` (a module map, as a layer is), with
//! each function of its script as a method: `m.forward(x)`, `m.encode(x)` run the script's
//! functions with `this` = the module. Stored in another module (`this.encoder = …`), its
//! parameters and buffers are the parent's (`encoder.net.weight`), trained, saved and moved with it.
use super::convert::{err, OrScript, RResult};
use super::error::ScriptError;
use super::lightning::{to_json, ScriptModule};
use super::registry::Registry;
use super::runner::Script;
use crate::trainer::module::LightningModule;
use rhai::{CallFnOptions, Dynamic, FnPtr, ImmutableString, Map, NativeCallContext, Scope};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Resolves `path` against the directory of the calling script, as `import` does.
fn beside_caller(ctx: &NativeCallContext, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match ctx.call_source().map(Path::new).and_then(Path::parent).filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if dir.join(p).exists() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

fn overrides(m: &Map) -> BTreeMap<String, Value> {
    m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()
}

/// The script functions that build a module rather than act on one: not methods of the value.
const CLASS_FNS: &[&str] = &["init", "hparams", "trainer", "callbacks", "datamodule"];

/// Calls `name` of `script` with `this` bound to `target` (the module value it is a method of).
fn call_method(script: &Script, target: &mut Dynamic, name: &str, args: Vec<Dynamic>) -> RResult<Dynamic> {
    let _nested = super::reentry::enter(&format!("{}'s `{name}`", script.name())).map_err(err)?;
    let opts = CallFnOptions::new().eval_ast(false).rewind_scope(true).bind_this_ptr(target);
    script.engine.call_fn_with_options::<Dynamic>(opts, &mut Scope::new(), &script.ast, name, args).map_err(|e| {
        // the inner error already says where it happened; the caller's report adds the call site
        let s = ScriptError::from_eval(&e, &script.name(), &script.source, Some(name)).to_string();
        err(s.trim_end().strip_prefix("error: ").unwrap_or(s.trim_end()).to_string())
    })
}

/// Turns a built module script into its module value: its `this`, with `_type` (the file's stem
/// unless `init` set one) and a method per script function (an attribute of the same name wins).
fn module_value(m: ScriptModule) -> Result<Dynamic, String> {
    let script: Rc<Script> = m.script.clone();
    let mut this = m.this.clone();
    drop(m);
    let stem = script.path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "Module".into());
    let mut map = this.write_lock::<Map>().ok_or("internal: a module script's `this` is not a map")?;
    map.entry("_type".into()).or_insert_with(|| Dynamic::from(stem));
    for f in script.ast.iter_functions() {
        let name = f.name.to_string();
        if CLASS_FNS.contains(&name.as_str()) || map.contains_key(name.as_str()) {
            continue;
        }
        let (code, method) = (script.clone(), name.clone());
        #[allow(deprecated)] // "volatile", not deprecated
        let fp = FnPtr::from_fn(name.as_str(), move |_ctx, args: &mut [&mut Dynamic]| {
            let (this, rest) = args
                .split_first_mut()
                .ok_or_else(|| err(format!("`{method}` is a method: call it as m.{method}(…)")))?;
            call_method(&code, this, &method, rest.iter().map(|a| (**a).clone()).collect())
        })
        .map_err(|e| format!("{}: fn {name} cannot be a method: {e}", script.name()))?;
        map.insert(name.into(), Dynamic::from(fp));
    }
    drop(map);
    Ok(this)
}

/// Reads and compiles a module script (its error is reported by the caller's `error:`).
fn load_script(script: &Path) -> Result<Script, String> {
    Script::load(script).map_err(|e| {
        let e = e.to_string();
        e.trim_end().strip_prefix("error: ").unwrap_or(e.trim_end()).to_string()
    })
}

/// Builds a module script with `hparams` overlaid on its own `hparams()`.
pub fn load_module(script: &Path, hparams: &BTreeMap<String, Value>) -> Result<Dynamic, String> {
    let _nested = super::reentry::enter(&format!("nn::load_module(\"{}\")", script.display()))?;
    let s = load_script(script)?;
    let (m, _) = ScriptModule::load(s, hparams, &BTreeMap::new())?;
    module_value(m)
}

/// `MyModel.load_from_checkpoint(ckpt, **overrides)`: the checkpoint's hyperparameters, then
/// `overrides`, then its weights (`strict`: every key must match).
pub fn load_from_checkpoint(
    script: &Path,
    ckpt: &Path,
    over: &BTreeMap<String, Value>,
    strict: bool,
) -> Result<Dynamic, String> {
    let ck = crate::checkpoint::Checkpoint::load(ckpt)?;
    let mut hp: BTreeMap<String, Value> = match ck.meta.get("hyper_parameters") {
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => BTreeMap::new(),
    };
    hp.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
    let _nested = super::reentry::enter(&format!("nn::load_from_checkpoint(\"{}\")", script.display()))?;
    let s = load_script(script)?;
    let (mut m, _) = ScriptModule::load(s, &hp, &BTreeMap::new())?;
    // as Lightning's `_load_state`: on_load_checkpoint sees the checkpoint, then the weights load
    m.on_load_checkpoint(&crate::trainer::checkpointing::checkpoint_extra(&ck))?;
    m.load_state_dict(&ck.section("state_dict"), strict).map_err(|e| format!("{}: {e}", ckpt.display()))?;
    module_value(m)
}

/// A weights-only checkpoint of a module with its hyperparameters (Lightning's
/// `trainer.save_checkpoint(path, weights_only=True)`), atomically.
fn save_checkpoint(module: &Dynamic, path: &Path) -> RResult<()> {
    let hparams = module.read_lock::<Map>().and_then(|m| m.get("hparams").map(to_json)).unwrap_or(Value::Null);
    let mut ck = crate::checkpoint::Checkpoint::new(serde_json::json!({
        "epoch": 0,
        "global_step": 0,
        "hyper_parameters": hparams,
        "weights_only": true,
    }));
    let weights = crate::nn::tree::state_dict(module).or_script()?;
    ck.add_section("state_dict", weights.into_iter().map(|(k, t)| (k, t.handle())));
    ck.save(path).or_script()
}

pub fn register(reg: &mut Registry) {
    let example = "```rhai\nlet dir = data::temp_dir();\ndata::write_text(dir + \"/tiny.rhai\", `\nfn hparams() { #{ hidden: 4 } }\nfn init(h) { this.save_hyperparameters(); this.net = nn::linear(2, h.hidden); }\nfn forward(x) { this.net.forward(x) }\nfn double(x) { this.forward(x) * 2 }\n`);\nlet m = nn::load_module(dir + \"/tiny.rhai\", #{hidden: 3});\nprint(m.double(torch::ones([1, 2])).shape);\nm.save_checkpoint(dir + \"/tiny.ckpt\");\nlet back = nn::load_from_checkpoint(dir + \"/tiny.rhai\", dir + \"/tiny.ckpt\");\nprint(back.hparams.hidden);\nprint(back.forward(torch::ones([1, 2])).shape);\n```";
    let doc = format!("Builds a module script as a module value (Lightning's `MyModel(**hparams)`): its `hparams()` overlaid with `hparams`, then `init`. A relative path is looked up beside the calling script first. The value is the module's `this` with each script function as a method (`m.forward(x)`, `m.encode(x)`, run with `this` = the module); stored in another module, its parameters are the parent's (`encoder.net.weight` in `state_dict()`), trained, saved, moved and summarized with it.\n\n{example}");
    reg.volatile(
        "nn",
        "load_module",
        "script, hparams",
        &doc,
        |ctx: NativeCallContext, script: ImmutableString, h: Map| -> RResult<Dynamic> {
            load_module(&beside_caller(&ctx, &script), &overrides(&h)).or_script()
        },
    );
    reg.volatile(
        "nn",
        "load_module",
        "script",
        &doc,
        |ctx: NativeCallContext, script: ImmutableString| -> RResult<Dynamic> {
            load_module(&beside_caller(&ctx, &script), &BTreeMap::new()).or_script()
        },
    );
    let doc = format!("Lightning's `MyModel.load_from_checkpoint(path, **overrides)`: builds the module script `script` with the hyperparameters saved in the checkpoint (`overrides` win), then loads its weights; the value is a module as `nn::load_module` gives. `opts`: `strict` (true: every key must match). An lt checkpoint is never unpickled; a Lightning `.ckpt` is read by a restricted unpickler that builds only tensors and containers, so loading cannot run code.\n\n{example}");
    reg.volatile(
        "nn",
        "load_from_checkpoint",
        "script, ckpt",
        &doc,
        |ctx: NativeCallContext, script: ImmutableString, ckpt: ImmutableString| -> RResult<Dynamic> {
            load_from_checkpoint(&beside_caller(&ctx, &script), &beside_caller(&ctx, &ckpt), &BTreeMap::new(), true)
                .or_script()
        },
    );
    reg.volatile(
        "nn",
        "load_from_checkpoint",
        "script, ckpt, overrides",
        &doc,
        |ctx: NativeCallContext, script: ImmutableString, ckpt: ImmutableString, o: Map| -> RResult<Dynamic> {
            load_from_checkpoint(&beside_caller(&ctx, &script), &beside_caller(&ctx, &ckpt), &overrides(&o), true)
                .or_script()
        },
    );
    reg.volatile(
        "nn",
        "load_from_checkpoint",
        "script, ckpt, overrides, opts",
        &doc,
        |ctx: NativeCallContext,
         script: ImmutableString,
         ckpt: ImmutableString,
         o: Map,
         opts: Map|
         -> RResult<Dynamic> {
            let o2 = super::convert::Opts::new(&opts, "nn::load_from_checkpoint", &["strict"])?;
            load_from_checkpoint(
                &beside_caller(&ctx, &script),
                &beside_caller(&ctx, &ckpt),
                &overrides(&o),
                o2.bool_or("strict", true)?,
            )
            .or_script()
        },
    );
    let doc = format!("Saves a module's weights (its `state_dict()`) and its `hparams` as a weights-only checkpoint (atomically), for `nn::load_from_checkpoint` and `lt test --ckpt`.\n\n{example}");
    reg.volatile(
        "",
        "save_checkpoint",
        "self, path",
        &doc,
        |ctx: NativeCallContext, m: &mut Map, p: ImmutableString| -> RResult<()> {
            let module = Dynamic::from_map(std::mem::take(m));
            let r = save_checkpoint(&module, &beside_caller(&ctx, &p));
            *m = module.cast::<Map>();
            r
        },
    );
}
