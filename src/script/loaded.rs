//! Module scripts as values inside another script: Lightning's `MyModel(**hparams)` and
//! `MyModel.load_from_checkpoint(path, **overrides)`, where the "class" is a module script file.
//! `nn::load_module("model.rhai", #{hidden: 64})` builds one (its `hparams()` overlaid with the
//! given map, then `init`); `nn::load_from_checkpoint("model.rhai", "best.ckpt", #{lr: 1e-4})`
//! builds it with the hyperparameters saved in the checkpoint (overrides win) and loads the
//! checkpoint's weights. The value calls the script's functions with its own `this`:
//! `m.forward(x)`, `m.call_fn("encode", [x])`.
use super::convert::{err, OrScript, RResult};
use super::lightning::{from_json, to_json, ScriptModule};
use super::registry::Registry;
use super::runner::Script;
use crate::trainer::module::LightningModule;
use rhai::{Array, Dynamic, ImmutableString, Map, NativeCallContext};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A module script instantiated from a script (shared: copies of the value are the same model).
#[derive(Clone)]
pub struct LoadedModule(Rc<RefCell<ScriptModule>>);

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

/// Builds a module script with `hparams` overlaid on its own `hparams()`.
pub fn load_module(script: &Path, hparams: &BTreeMap<String, Value>) -> Result<LoadedModule, String> {
    let _nested = super::reentry::enter(&format!("nn::load_module(\"{}\")", script.display()))?;
    let s = Script::load(script).map_err(|e| e.to_string().trim_end().to_string())?;
    let (m, _) = ScriptModule::load(s, hparams, &BTreeMap::new())?;
    Ok(LoadedModule(Rc::new(RefCell::new(m))))
}

/// `MyModel.load_from_checkpoint(ckpt, **overrides)`: the checkpoint's hyperparameters, then
/// `overrides`, then its weights (`strict`: every key must match).
pub fn load_from_checkpoint(
    script: &Path,
    ckpt: &Path,
    over: &BTreeMap<String, Value>,
    strict: bool,
) -> Result<LoadedModule, String> {
    let ck = crate::checkpoint::Checkpoint::load(ckpt)?;
    let mut hp: BTreeMap<String, Value> = match ck.meta.get("hyper_parameters") {
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => BTreeMap::new(),
    };
    hp.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
    let m = load_module(script, &hp)?;
    {
        // as Lightning's `_load_state`: on_load_checkpoint sees the checkpoint, then the weights load
        use crate::trainer::module::LightningModule;
        let mut module = m.0.borrow_mut();
        module.on_load_checkpoint(&crate::trainer::checkpointing::checkpoint_extra(&ck))?;
        module.load_state_dict(&ck.section("state_dict"), strict).map_err(|e| format!("{}: {e}", ckpt.display()))?;
    }
    Ok(m)
}

impl LoadedModule {
    /// The module, unless one of its own functions is running (it was passed to itself).
    fn get(&self) -> RResult<std::cell::Ref<'_, ScriptModule>> {
        self.0.try_borrow().map_err(|_| err("the loaded module is busy: one of its functions is running"))
    }

    fn get_mut(&self) -> RResult<std::cell::RefMut<'_, ScriptModule>> {
        self.0.try_borrow_mut().map_err(|_| err("the loaded module is busy: one of its functions is running"))
    }

    fn call(&self, name: &str, args: Vec<Dynamic>) -> RResult<Dynamic> {
        let _nested = super::reentry::enter(&format!("a loaded module's `{name}`")).map_err(err)?;
        let mut m = self.get_mut()?;
        if !m.has_fn(name) {
            return Err(err(format!("{} defines no `fn {name}`", m.script.name())));
        }
        // the inner error already says where it happened; the caller's report adds the call site
        m.call_hook(name, args).map_err(|e| err(e.strip_prefix("error: ").unwrap_or(&e).to_string()))
    }

    /// A weights-only checkpoint with the hyperparameters (Lightning's
    /// `trainer.save_checkpoint(path, weights_only=True)`), atomically.
    fn save_checkpoint(&self, path: &Path) -> RResult<()> {
        let m = self.get()?;
        let mut ck = crate::checkpoint::Checkpoint::new(serde_json::json!({
            "epoch": 0,
            "global_step": 0,
            "hyper_parameters": m.hparams(),
            "weights_only": true,
        }));
        ck.add_section("state_dict", m.state_dict().or_script()?);
        ck.save(path).or_script()
    }
}

pub fn register(reg: &mut Registry) {
    reg.global_module().set_custom_type::<LoadedModule>("LoadedModule");
    let example = "```rhai\nlet dir = data::temp_dir();\ndata::write_text(dir + \"/tiny.rhai\", `\nfn hparams() { #{ hidden: 4 } }\nfn init(h) { this.save_hyperparameters(); this.net = nn::linear(2, h.hidden); }\nfn forward(x) { this.net.forward(x) }\n`);\nlet m = nn::load_module(dir + \"/tiny.rhai\", #{hidden: 3});\nm.save_checkpoint(dir + \"/tiny.ckpt\");\nlet back = nn::load_from_checkpoint(dir + \"/tiny.rhai\", dir + \"/tiny.ckpt\");\nprint(back.hparams.hidden);\nprint(back.forward(torch::ones([1, 2])).shape);\n```";
    let doc = format!("Builds a module script as a value (Lightning's `MyModel(**hparams)`): its `hparams()` overlaid with `hparams`, then `init`. A relative path is looked up beside the calling script first. Call its functions with `m.forward(x)` or `m.call_fn(name, args)`; `m.net` reads an attribute of its `this`, `m.to_map()` gives all of it.\n\n{example}");
    reg.volatile(
        "nn",
        "load_module",
        "script, hparams",
        &doc,
        |ctx: NativeCallContext, script: ImmutableString, h: Map| -> RResult<LoadedModule> {
            load_module(&beside_caller(&ctx, &script), &overrides(&h)).or_script()
        },
    );
    reg.volatile(
        "nn",
        "load_module",
        "script",
        &doc,
        |ctx: NativeCallContext, script: ImmutableString| -> RResult<LoadedModule> {
            load_module(&beside_caller(&ctx, &script), &BTreeMap::new()).or_script()
        },
    );
    let doc = format!("Lightning's `MyModel.load_from_checkpoint(path, **overrides)`: builds the module script `script` with the hyperparameters saved in the checkpoint (`overrides` win), then loads its weights. `opts`: `strict` (true: every key must match). An lt checkpoint is never unpickled; a Lightning `.ckpt` is read by a restricted unpickler that builds only tensors and containers, so loading cannot run code.\n\n{example}");
    reg.volatile(
        "nn",
        "load_from_checkpoint",
        "script, ckpt",
        &doc,
        |ctx: NativeCallContext, script: ImmutableString, ckpt: ImmutableString| -> RResult<LoadedModule> {
            load_from_checkpoint(&beside_caller(&ctx, &script), &beside_caller(&ctx, &ckpt), &BTreeMap::new(), true)
                .or_script()
        },
    );
    reg.volatile(
        "nn",
        "load_from_checkpoint",
        "script, ckpt, overrides",
        &doc,
        |ctx: NativeCallContext, script: ImmutableString, ckpt: ImmutableString, o: Map| -> RResult<LoadedModule> {
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
         -> RResult<LoadedModule> {
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

    let doc = format!("Calls the loaded script's `forward` with its own `this`.\n\n{example}");
    reg.volatile("", "forward", "self, x", &doc, |m: &mut LoadedModule, x: Dynamic| m.call("forward", vec![x]));
    reg.volatile("", "forward", "self, x, y", &doc, |m: &mut LoadedModule, x: Dynamic, y: Dynamic| {
        m.call("forward", vec![x, y])
    });
    let doc = format!(
        "Calls any function of the loaded script with its own `this`: `m.call_fn(\"encode\", [x])`.\n\n{example}"
    );
    reg.volatile(
        "",
        "call_fn",
        "self, name, args",
        &doc,
        |m: &mut LoadedModule, name: ImmutableString, args: Array| m.call(&name, args),
    );
    let doc = format!("The loaded module's hyperparameters (`this.hparams`).\n\n{example}");
    reg.getter("hparams", &doc, |m: &mut LoadedModule| -> RResult<Dynamic> { Ok(from_json(&m.get()?.hparams())) });
    let doc = format!("An attribute of the loaded module's `this` (layers and tensors are shared with it): `m.net`, `m[\"net\"]`.\n\n{example}\n\n```rhai\nlet dir = data::temp_dir();\ndata::write_text(dir + \"/a.rhai\", \"fn init(h) {{ this.net = nn::linear(2, 3); }}\");\nlet m = nn::load_module(dir + \"/a.rhai\");\nprint(m.net.weight.shape);\nprint(m.to_map().parameters().len());\n```");
    reg.index_get(&doc, |m: &mut LoadedModule, key: ImmutableString| -> RResult<Dynamic> {
        let this = m.get()?.this.clone();
        let found = this.read_lock::<Map>().and_then(|t| t.get(key.as_str()).cloned());
        found.ok_or_else(|| err(format!("the loaded module has no attribute '{key}'")))
    });
    let doc = format!("The loaded module's whole `this` map (its layers share tensors with it): `m.to_map().parameters()`.\n\n{example}");
    reg.func("", "to_map", "self", &doc, |m: &mut LoadedModule| -> RResult<Dynamic> { Ok(m.get()?.this.clone()) });
    let doc = format!("Training mode on (true) or off for every layer of the loaded module (dropout, batch norm).\n\n{example}\n\n```rhai\nlet dir = data::temp_dir();\ndata::write_text(dir + \"/d.rhai\", \"fn init(h) {{ this.drop = nn::dropout(0.5); }}\\nfn forward(x) {{ this.drop.forward(x) }}\");\nlet m = nn::load_module(dir + \"/d.rhai\");\nm.train(false);\nprint(m.forward(torch::ones([4])));\n```");
    reg.volatile("", "train", "self, mode", &doc, |m: &mut LoadedModule, mode: bool| -> RResult<()> {
        m.get_mut()?.set_training(mode).or_script()
    });
    let doc = format!("Saves the loaded module's weights and hyperparameters as a weights-only checkpoint (atomically), for `nn::load_from_checkpoint` and `lt test --ckpt`.\n\n{example}");
    reg.volatile(
        "",
        "save_checkpoint",
        "self, path",
        &doc,
        |ctx: NativeCallContext, m: &mut LoadedModule, p: ImmutableString| -> RResult<()> {
            m.save_checkpoint(&beside_caller(&ctx, &p))
        },
    );
    reg.func("", "to_string", "self", "The script a loaded module came from.\n\n```rhai\nlet dir = data::temp_dir();\ndata::write_text(dir + \"/e.rhai\", \"fn init(h) {}\");\nprint(nn::load_module(dir + \"/e.rhai\"));\n```", |m: &mut LoadedModule| -> String {
        match m.0.try_borrow() {
            Ok(inner) => format!("LoadedModule({})", inner.script.name()),
            Err(_) => "LoadedModule(running)".to_string(),
        }
    });
}
