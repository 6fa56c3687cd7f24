//! The tensor script surface: `torch::` creation and free functions, tensor methods, operators,
//! properties and indexing. Every call goes through tch's fallible `f_` functions.
use super::create::{self, like_opts};
use super::index;
use super::options::{device_name, dtype_name, parse_device, parse_dtype, TensorOptions};
use super::Tensor;
use crate::script::convert::{err, int_list, literal, number, tensor_options, to_tensor, Opts, OrScript, RResult};
use crate::script::registry::Registry;
use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext, FLOAT, INT};

type ExclusiveRange = std::ops::Range<INT>;
use tch::Kind;

type T = Tensor;

fn ok(t: Result<tch::Tensor, tch::TchError>) -> RResult<Tensor> {
    t.map(Tensor::new).map_err(|e| err(super::TensorError::from(e)))
}

fn none() -> Map {
    Map::new()
}

/// Elementwise functions with no arguments: method `x.f()` and free function `torch::f(x)`.
macro_rules! unary {
    ($reg:expr; $($name:literal => $f:ident),* $(,)?) => {$(
        let doc = format!(
            "Elementwise `{0}` (torch.{0}); also `torch::{0}(x)`.\n\n```rhai\nlet x = torch::tensor([0.5, 1.0, 2.0]);\nprint(x.{0}());\n```",
            $name
        );
        $reg.func("", $name, "self", &doc, |x: &mut T| ok(x.0.$f()));
        $reg.func("torch", $name, "x", &doc, |x: T| ok(x.0.$f()));
    )*};
}

/// Binary elementwise ops taking a tensor or a number.
macro_rules! binary {
    ($reg:expr; $($name:literal => $tt:ident, $ts:ident),* $(,)?) => {$(
        let doc = format!(
            "Elementwise `{0}` with a tensor or a number (torch.{0}); also `torch::{0}(x, y)`.\n\n```rhai\nlet x = torch::tensor([1.0, 2.0]);\nprint(x.{0}(torch::tensor([3.0, 4.0])));\nprint(x.{0}(2));\n```",
            $name
        );
        $reg.func("", $name, "self, other", &doc, |x: &mut T, y: T| ok(x.0.$tt(&y.0)));
        $reg.func("", $name, "self, other", &doc, |x: &mut T, y: INT| ok(x.0.$ts(y)));
        $reg.func("", $name, "self, other", &doc, |x: &mut T, y: FLOAT| ok(x.0.$ts(y)));
        $reg.func("torch", $name, "x, other", &doc, |x: T, y: T| ok(x.0.$tt(&y.0)));
        $reg.func("torch", $name, "x, other", &doc, |x: T, y: INT| ok(x.0.$ts(y)));
        $reg.func("torch", $name, "x, other", &doc, |x: T, y: FLOAT| ok(x.0.$ts(y)));
    )*};
}

/// Operators `x op y` with tensors and INT/FLOAT on either side.
macro_rules! operator {
    ($reg:expr, $op:literal, $desc:literal, $tt:expr, $ts:expr, $st:expr) => {{
        let doc = format!(
            "{} (`{}`) with tensors and numbers on either side, broadcasting like PyTorch.\n\n```rhai\nlet x = torch::tensor([1.0, 2.0]);\nprint(x {} x);\nprint(x {} 2);\nprint(3.0 {} x);\n```",
            $desc, $op, $op, $op, $op
        );
        $reg.func("", $op, "x, y", &doc, |x: &mut T, y: T| ok($tt(&x.0, &y.0)));
        $reg.func("", $op, "x, y", &doc, |x: &mut T, y: INT| ok($ts(&x.0, tch::Scalar::from(y))));
        $reg.func("", $op, "x, y", &doc, |x: &mut T, y: FLOAT| ok($ts(&x.0, tch::Scalar::from(y))));
        $reg.func("", $op, "x, y", &doc, |x: INT, y: T| ok($st(tch::Scalar::from(x), &y.0)));
        $reg.func("", $op, "x, y", &doc, |x: FLOAT, y: T| ok($st(tch::Scalar::from(x), &y.0)));
    }};
}

/// Reductions with optional `dim` (int or array) and `keepdim`.
macro_rules! reduction {
    ($reg:expr, $name:literal, $desc:literal, $all:expr, $dims:expr) => {{
        let doc = format!(
            "{} of all elements, or along `dim` (an int or an array of ints), keeping reduced dims with `keepdim` (torch.{}).\n\n```rhai\nlet x = torch::tensor([[1.0, 2.0], [3.0, 4.0]]);\nprint(x.{}());\nprint(x.{}(1));\nprint(x.{}([0, 1], true));\n```",
            $desc, $name, $name, $name, $name
        );
        $reg.func("", $name, "self", &doc, |x: &mut T| ok($all(&x.0)));
        $reg.func("", $name, "self, dim", &doc, |x: &mut T, d: Dynamic| {
            let dims = int_list(&d, $name)?;
            ok($dims(&x.0, dims.as_slice(), false))
        });
        $reg.func("", $name, "self, dim, keepdim", &doc, |x: &mut T, d: Dynamic, k: bool| {
            let dims = int_list(&d, $name)?;
            ok($dims(&x.0, dims.as_slice(), k))
        });
        $reg.func("torch", $name, "x", &doc, |x: T| ok($all(&x.0)));
        $reg.func("torch", $name, "x, dim", &doc, |x: T, d: Dynamic| {
            let dims = int_list(&d, $name)?;
            ok($dims(&x.0, dims.as_slice(), false))
        });
        $reg.func("torch", $name, "x, dim, keepdim", &doc, |x: T, d: Dynamic, k: bool| {
            let dims = int_list(&d, $name)?;
            ok($dims(&x.0, dims.as_slice(), k))
        });
    }};
}

/// Ops with a shape argument that PyTorch also takes as varargs: `x.reshape([2, 3])` and
/// `x.reshape(2, 3)`.
macro_rules! shape_arg {
    ($reg:expr, $name:literal, $doc:expr, $f:expr) => {{
        let doc = $doc;
        $reg.func("", $name, "self, shape", &doc, |x: &mut T, s: Array| {
            let s = crate::script::convert::ints(&s, $name)?;
            ok($f(&x.0, s.as_slice()))
        });
        $reg.func("", $name, "self, d0", &doc, |x: &mut T, a: INT| ok($f(&x.0, &[a][..])));
        $reg.func("", $name, "self, d0, d1", &doc, |x: &mut T, a: INT, b: INT| ok($f(&x.0, &[a, b][..])));
        $reg.func("", $name, "self, d0, d1, d2", &doc, |x: &mut T, a: INT, b: INT, c: INT| {
            ok($f(&x.0, &[a, b, c][..]))
        });
        $reg.func("", $name, "self, d0, d1, d2, d3", &doc, |x: &mut T, a: INT, b: INT, c: INT, d: INT| {
            ok($f(&x.0, &[a, b, c, d][..]))
        });
    }};
}

/// Applies an in-place arithmetic op to the tensor behind `x`.
fn inplace(x: &Tensor, op: &str, y: &tch::Tensor) -> RResult<()> {
    let mut h = x.handle();
    let r = match op {
        "add" => h.f_add_(y),
        "sub" => h.f_sub_(y),
        "mul" => h.f_mul_(y),
        _ => h.f_div_(y),
    };
    r.map(|_| ()).map_err(|e| err(super::TensorError::from(e)))
}

/// A 0-dim tensor holding `v` on `x`'s device. 0-dim operands do not widen a tensor's dtype, so
/// `x += 1` keeps float32, while `int_tensor *= 2.5` is refused as in PyTorch.
fn scalar_like<V: Into<tch::Tensor>>(v: V, x: &Tensor) -> RResult<tch::Tensor> {
    let t: tch::Tensor = v.into();
    t.f_to_device(x.device()).or_script()
}

/// `#{values, indices}`, the script form of PyTorch's named (values, indices) tuples.
fn values_indices(v: tch::Tensor, i: tch::Tensor) -> Map {
    let mut m = Map::new();
    m.insert("values".into(), Dynamic::from(Tensor::new(v)));
    m.insert("indices".into(), Dynamic::from(Tensor::new(i)));
    m
}

fn shape_of(d: &Dynamic, what: &str) -> RResult<Vec<i64>> {
    int_list(d, what)
}

/// Runs a creation function over a shape given as array/int, with optional options map.
fn creation(reg: &mut Registry, name: &'static str, doc: &str, f: fn(&[i64], &TensorOptions) -> super::Result<Tensor>) {
    reg.volatile("torch", name, "shape", doc, move |s: Dynamic| {
        f(&shape_of(&s, &format!("torch::{name}"))?, &TensorOptions::default()).or_script()
    });
    reg.volatile("torch", name, "shape, opts", doc, move |s: Dynamic, o: Map| {
        f(&shape_of(&s, &format!("torch::{name}"))?, &tensor_options(&o, &format!("torch::{name}"))?).or_script()
    });
    let like = format!("{name}_like");
    let like_doc = format!(
        "`torch::{name}` with the shape, dtype and device of `x` (torch.{name}_like); options override.\n\n```rhai\nlet x = torch::ones([2, 2]);\nprint(torch::{name}_like(x).shape);\n```"
    );
    reg.volatile("torch", &like, "x", &like_doc, move |x: T| {
        let o = like_opts(&x, &TensorOptions::default(), false, false);
        f(&x.size(), &o).or_script()
    });
    reg.volatile("torch", &like, "x, opts", &like_doc, move |x: T, m: Map| {
        let given = tensor_options(&m, name)?;
        let o = like_opts(&x, &given, m.contains_key("dtype"), m.contains_key("device"));
        f(&x.size(), &o).or_script()
    });
}

fn to_dynamic_value(t: &tch::Tensor, flat: usize) -> RResult<Dynamic> {
    let _ = flat;
    item(t)
}

/// `x.item()`: the single value as FLOAT, INT or BOOL.
fn item(t: &tch::Tensor) -> RResult<Dynamic> {
    if t.numel() != 1 {
        return Err(err(format!("a Tensor with {} elements cannot be converted to a scalar", t.numel())));
    }
    let t = t.f_detach().or_script()?.f_to_device(tch::Device::Cpu).or_script()?.f_reshape([1]).or_script()?;
    Ok(match t.kind() {
        Kind::Bool => Dynamic::from_bool(t.f_int64_value(&[0]).or_script()? != 0),
        k if super::options::is_floating(k) => Dynamic::from_float(t.f_double_value(&[0]).or_script()?),
        _ => Dynamic::from_int(t.f_int64_value(&[0]).or_script()?),
    })
}

/// `x.to_array()`: nested arrays of the values.
fn to_array(t: &tch::Tensor) -> RResult<Dynamic> {
    if t.dim() == 0 {
        return to_dynamic_value(t, 0);
    }
    let n = t.size()[0];
    let mut out = Array::with_capacity(n as usize);
    for i in 0..n {
        out.push(to_array(&t.f_get(i).or_script()?)?);
    }
    Ok(Dynamic::from_array(out))
}

/// `x.to(...)` target: a device name, a dtype name, or a map of both.
fn to_target(x: &tch::Tensor, s: &str) -> RResult<Tensor> {
    let device = parse_device(s);
    if let Ok(d) = device {
        return ok(x.f_to_device(d));
    }
    match parse_dtype(s) {
        Ok(k) => ok(x.f_to_kind(k)),
        // a device name that names a device this machine lacks: say that (not "neither …")
        Err(_) if device.as_ref().is_err_and(|e| e.to_string().contains("not available")) => {
            Err(err(device.err().map(|e| format!("to: {e}")).unwrap_or_default()))
        }
        Err(_) => Err(err(format!(
            "to: '{s}' is neither a device (\"cpu\", \"cuda\", \"cuda:N\") nor a dtype (\"float32\", \"int64\", …)"
        ))),
    }
}

fn split_result(parts: Vec<tch::Tensor>) -> Array {
    parts.into_iter().map(|p| Dynamic::from(Tensor::new(p))).collect()
}

fn tensors(a: &Array, what: &str) -> RResult<Vec<tch::Tensor>> {
    a.iter()
        .enumerate()
        .map(|(i, d)| {
            d.read_lock::<Tensor>()
                .map(|t| t.0.shallow_clone())
                .ok_or_else(|| err(format!("{what}: element {i} is a {}, expected a Tensor", d.type_name())))
        })
        .collect()
}

/// Registers the whole tensor surface.
pub fn register(reg: &mut Registry) {
    reg.global_module().set_custom_type::<Tensor>("Tensor");
    register_creation(reg);
    register_properties(reg);
    register_operators(reg);
    register_math(reg);
    register_reductions(reg);
    register_shape(reg);
    register_indexing(reg);
    register_autograd(reg);
    register_output(reg);
}

fn register_creation(reg: &mut Registry) {
    let doc = "Makes a tensor from a number or (nested) array, inferring the dtype like PyTorch: \
any float gives float32, all ints give int64, all bools give bool (torch.tensor). \
Options: `dtype`, `device`, `requires_grad`.\n\n```rhai\nprint(torch::tensor([[1, 2], [3, 4]]));\nprint(torch::tensor([1.5, 2.0], #{dtype: \"float64\", requires_grad: true}));\n```";
    reg.func("torch", "tensor", "data", doc, |d: Dynamic| {
        let (lit, shape) = literal(&d)?;
        create::from_literal(lit, &shape, &TensorOptions::default()).or_script()
    });
    reg.func("torch", "tensor", "data, opts", doc, |d: Dynamic, o: Map| {
        let (lit, shape) = literal(&d)?;
        create::from_literal(lit, &shape, &tensor_options(&o, "torch::tensor")?).or_script()
    });
    creation(reg, "zeros", "A tensor of zeros of the given shape (torch.zeros). Options: `dtype`, `device`, `requires_grad`.\n\n```rhai\nprint(torch::zeros([2, 3]));\nprint(torch::zeros(3, #{dtype: \"int64\"}));\n```", create::zeros);
    creation(reg, "ones", "A tensor of ones of the given shape (torch.ones).\n\n```rhai\nprint(torch::ones([2, 2], #{dtype: \"float64\"}));\n```", create::ones);
    creation(reg, "empty", "An uninitialized tensor of the given shape (torch.empty); fill it before reading.\n\n```rhai\nlet x = torch::empty([2, 3]);\nprint(x.shape);\n```", create::empty);
    creation(reg, "rand", "Uniform random numbers in [0, 1) (torch.rand); seeded by `torch::manual_seed`.\n\n```rhai\ntorch::manual_seed(0);\nprint(torch::rand([2, 2]).shape);\n```", create::rand);
    creation(reg, "randn", "Standard normal random numbers (torch.randn); seeded by `torch::manual_seed`.\n\n```rhai\ntorch::manual_seed(0);\nprint(torch::randn([3]).shape);\n```", create::randn);

    let doc = "A tensor filled with `value` (torch.full); int values give int64 unless `dtype` says otherwise.\n\n```rhai\nprint(torch::full([2, 2], 7));\nprint(torch::full([2], 0.5));\n```";
    reg.func("torch", "full", "shape, value", doc, |s: Dynamic, v: Dynamic| {
        let val = number(&v, "torch::full")?;
        create::full(&shape_of(&s, "torch::full")?, val, v.is_int(), &TensorOptions::default()).or_script()
    });
    reg.func("torch", "full", "shape, value, opts", doc, |s: Dynamic, v: Dynamic, o: Map| {
        let val = number(&v, "torch::full")?;
        create::full(&shape_of(&s, "torch::full")?, val, v.is_int(), &tensor_options(&o, "torch::full")?).or_script()
    });
    let doc = "`torch::full_like(x, value)`: the shape, dtype and device of `x`, filled with `value`.\n\n```rhai\nprint(torch::full_like(torch::zeros([2]), 3.0));\n```";
    reg.func("torch", "full_like", "x, value", doc, |x: T, v: Dynamic| {
        let val = number(&v, "torch::full_like")?;
        let o = like_opts(&x, &TensorOptions::default(), false, false);
        create::full(&x.size(), val, false, &o).or_script()
    });

    let doc = "Values from `start` (default 0) to `end` (exclusive) by `step` (torch.arange); int64 when every bound is an int, else float32.\n\n```rhai\nprint(torch::arange(5));\nprint(torch::arange(1, 2, 0.25));\nprint(torch::arange(0, 3, 1, #{dtype: \"float32\"}));\n```";
    fn ar(s: &Dynamic, e: &Dynamic, st: &Dynamic, o: &TensorOptions) -> RResult<Tensor> {
        let all_int = s.is_int() && e.is_int() && st.is_int();
        create::arange(number(s, "arange")?, number(e, "arange")?, number(st, "arange")?, all_int, o).or_script()
    }
    reg.func("torch", "arange", "end", doc, |e: Dynamic| {
        ar(&Dynamic::from_int(0), &e, &Dynamic::from_int(1), &TensorOptions::default())
    });
    reg.func("torch", "arange", "start, end", doc, |s: Dynamic, e: Dynamic| {
        ar(&s, &e, &Dynamic::from_int(1), &TensorOptions::default())
    });
    reg.func("torch", "arange", "start, end, step", doc, |s: Dynamic, e: Dynamic, st: Dynamic| {
        ar(&s, &e, &st, &TensorOptions::default())
    });
    reg.func("torch", "arange", "start, end, step, opts", doc, |s: Dynamic, e: Dynamic, st: Dynamic, o: Map| {
        ar(&s, &e, &st, &tensor_options(&o, "torch::arange")?)
    });

    let doc = "`steps` evenly spaced values from `start` to `end` inclusive (torch.linspace).\n\n```rhai\nprint(torch::linspace(0, 1, 5));\n```";
    reg.func("torch", "linspace", "start, end, steps", doc, |s: Dynamic, e: Dynamic, n: INT| {
        create::linspace(number(&s, "linspace")?, number(&e, "linspace")?, n, &TensorOptions::default()).or_script()
    });
    reg.func("torch", "linspace", "start, end, steps, opts", doc, |s: Dynamic, e: Dynamic, n: INT, o: Map| {
        create::linspace(number(&s, "linspace")?, number(&e, "linspace")?, n, &tensor_options(&o, "torch::linspace")?)
            .or_script()
    });

    let doc = "The identity matrix `n`×`n` or `n`×`m` (torch.eye).\n\n```rhai\nprint(torch::eye(2));\nprint(torch::eye(2, 3, #{dtype: \"int64\"}));\n```";
    reg.func("torch", "eye", "n", doc, |n: INT| create::eye(n, n, &TensorOptions::default()).or_script());
    reg.func("torch", "eye", "n, m", doc, |n: INT, m: INT| create::eye(n, m, &TensorOptions::default()).or_script());
    reg.func("torch", "eye", "n, m, opts", doc, |n: INT, m: INT, o: Map| {
        create::eye(n, m, &tensor_options(&o, "torch::eye")?).or_script()
    });

    let doc = "Random integers in [low, high) of the given shape (torch.randint); `low` defaults to 0.\n\n```rhai\ntorch::manual_seed(1);\nlet x = torch::randint(0, 10, [4]);\nprint(x.dtype);\n```";
    reg.volatile("torch", "randint", "high, shape", doc, |h: INT, s: Dynamic| {
        create::randint(0, h, &shape_of(&s, "randint")?, &TensorOptions::default()).or_script()
    });
    reg.volatile("torch", "randint", "low, high, shape", doc, |l: INT, h: INT, s: Dynamic| {
        create::randint(l, h, &shape_of(&s, "randint")?, &TensorOptions::default()).or_script()
    });
    reg.volatile("torch", "randint", "low, high, shape, opts", doc, |l: INT, h: INT, s: Dynamic, o: Map| {
        create::randint(l, h, &shape_of(&s, "randint")?, &tensor_options(&o, "torch::randint")?).or_script()
    });
    let doc = "A random permutation of 0..n (torch.randperm).\n\n```rhai\ntorch::manual_seed(0);\nprint(torch::randperm(5).sort().values);\n```";
    reg.volatile("torch", "randperm", "n", doc, |n: INT| create::randperm(n, &TensorOptions::default()).or_script());
    reg.volatile("torch", "randperm", "n, opts", doc, |n: INT, o: Map| {
        create::randperm(n, &tensor_options(&o, "torch::randperm")?).or_script()
    });
    let doc = "Seeds libtorch's random number generator (torch.manual_seed), for reproducible `rand`, `randn`, dropout and init.\n\n```rhai\ntorch::manual_seed(42);\nlet a = torch::rand([2]);\ntorch::manual_seed(42);\nprint(a.equal(torch::rand([2])));\n```";
    reg.volatile("torch", "manual_seed", "seed", doc, |s: INT| tch::manual_seed(s));
}

fn register_properties(reg: &mut Registry) {
    reg.getter(
        "shape",
        "The shape as an array of ints (x.shape).\n\n```rhai\nprint(torch::zeros([2, 3]).shape);\n```",
        |x: &mut T| -> Array { x.size().into_iter().map(Dynamic::from_int).collect() },
    );
    reg.func("", "size", "self", "The shape as an array of ints (x.size()); `x.size(d)` is one dimension.\n\n```rhai\nlet x = torch::zeros([2, 3]);\nprint(x.size());\nprint(x.size(-1));\n```", |x: &mut T| -> Array {
        x.size().into_iter().map(Dynamic::from_int).collect()
    });
    reg.func("", "size", "self, dim", "The size of dimension `dim` (negative counts from the end).\n\n```rhai\nprint(torch::zeros([2, 3]).size(1));\n```", |x: &mut T, d: INT| -> RResult<INT> {
        let s = x.size();
        let i = index::wrap_index(d, s.len() as i64, 0).map_err(|_| {
            err(format!("Dimension out of range (expected to be in range of [{}, {}], but got {d})", -(s.len() as i64), s.len() as i64 - 1))
        })?;
        Ok(s[i as usize])
    });
    reg.getter(
        "dtype",
        "The dtype name (`\"float32\"`, `\"int64\"`, …).\n\n```rhai\nprint(torch::arange(3).dtype);\n```",
        |x: &mut T| -> String { dtype_name(x.kind()).to_string() },
    );
    reg.getter(
        "device",
        "The device name (`\"cpu\"`, `\"cuda:0\"`).\n\n```rhai\nprint(torch::zeros([1]).device);\n```",
        |x: &mut T| -> String { device_name(x.device()) },
    );
    reg.func(
        "",
        "dim",
        "self",
        "Number of dimensions (x.dim()).\n\n```rhai\nprint(torch::zeros([2, 3]).dim());\n```",
        |x: &mut T| x.dim() as INT,
    );
    reg.getter(
        "ndim",
        "Number of dimensions (x.ndim).\n\n```rhai\nprint(torch::zeros([2, 3]).ndim);\n```",
        |x: &mut T| x.dim() as INT,
    );
    reg.func(
        "",
        "numel",
        "self",
        "Number of elements (x.numel()).\n\n```rhai\nprint(torch::zeros([2, 3]).numel());\n```",
        |x: &mut T| x.numel() as INT,
    );
    reg.func(
        "",
        "is_floating_point",
        "self",
        "True for float dtypes.\n\n```rhai\nprint(torch::zeros([1]).is_floating_point());\n```",
        |x: &mut T| super::options::is_floating(x.kind()),
    );
    reg.func(
        "",
        "is_contiguous",
        "self",
        "True when the memory layout is contiguous.\n\n```rhai\nprint(torch::zeros([2, 3]).t().is_contiguous());\n```",
        |x: &mut T| x.is_contiguous(),
    );
    reg.getter("is_leaf", "True for tensors not produced by a differentiable op (x.is_leaf).\n\n```rhai\nlet w = torch::ones([2], #{requires_grad: true});\nprint(w.is_leaf);\nprint((w * 2).is_leaf);\n```", |x: &mut T| -> RResult<bool> {
        x.f_is_leaf().or_script()
    });

    let doc = "Converts dtype and/or device: `x.to(\"float64\")`, `x.to(\"cuda\")`, `x.to(#{dtype, device, non_blocking, copy})`, `x.to(other)` (other's dtype and device).\n\n```rhai\nlet x = torch::arange(3);\nprint(x.to(\"float64\"));\nprint(x.to(#{dtype: \"float32\", device: \"cpu\"}));\n```";
    reg.func("", "to", "self, target", doc, |x: &mut T, s: &str| to_target(&x.0, s));
    reg.func("", "to", "self, opts", doc, |x: &mut T, m: Map| -> RResult<Tensor> {
        let o = Opts::new(&m, "to", &["dtype", "device", "non_blocking", "copy"])?;
        let device = match o.str_opt("device")? {
            Some(d) => parse_device(&d).or_script()?,
            None => x.device(),
        };
        let kind = match o.str_opt("dtype")? {
            Some(k) => parse_dtype(&k).or_script()?,
            None => x.kind(),
        };
        // one conversion, as PyTorch's: `non_blocking` lets a pinned-memory copy to CUDA overlap
        let (non_blocking, copy) = (o.bool_or("non_blocking", false)?, o.bool_or("copy", false)?);
        ok(x.f_to_device_(device, kind, non_blocking, copy))
    });
    reg.func("", "to", "self, other", doc, |x: &mut T, o: T| {
        ok(x.f_to_device(o.device()).and_then(|t| t.f_to_kind(o.kind())))
    });
    for (name, kind) in [
        ("float", Kind::Float),
        ("double", Kind::Double),
        ("half", Kind::Half),
        ("bfloat16", Kind::BFloat16),
        ("long", Kind::Int64),
        ("int", Kind::Int),
        ("bool", Kind::Bool),
    ] {
        let doc = format!(
            "Casts to {} (x.{name}()).\n\n```rhai\nprint(torch::tensor([1.7, -0.2]).{name}());\n```",
            dtype_name(kind)
        );
        reg.func("", name, "self", &doc, move |x: &mut T| ok(x.f_to_kind(kind)));
    }
    reg.func("", "cpu", "self", "Copies to the CPU (x.cpu()); a CPU tensor is returned as is.\n\n```rhai\nprint(torch::ones([1]).cpu().device);\n```", |x: &mut T| ok(x.f_to_device(tch::Device::Cpu)));
}

fn register_operators(reg: &mut Registry) {
    operator!(
        reg,
        "+",
        "Addition",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_add(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_add_scalar(s),
        |s: tch::Scalar, b: &tch::Tensor| b.f_add_scalar(s)
    );
    operator!(
        reg,
        "-",
        "Subtraction",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_sub(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_sub_scalar(s),
        |s: tch::Scalar, b: &tch::Tensor| b.f_neg().and_then(|n| n.f_add_scalar(s))
    );
    operator!(
        reg,
        "*",
        "Multiplication",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_mul(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_mul_scalar(s),
        |s: tch::Scalar, b: &tch::Tensor| b.f_mul_scalar(s)
    );
    operator!(
        reg,
        "/",
        "True division",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_div(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_div_scalar(s),
        |s: tch::Scalar, b: &tch::Tensor| b.f_reciprocal().and_then(|r| r.f_mul_scalar(s))
    );
    operator!(
        reg,
        "%",
        "Python-style remainder (torch.remainder)",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_remainder_tensor(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_remainder(s),
        |s: tch::Scalar, b: &tch::Tensor| tch::Tensor::f_remainder_scalar_tensor(s, b)
    );
    operator!(
        reg,
        "**",
        "Power (torch.pow)",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_pow(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_pow_tensor_scalar(s),
        |s: tch::Scalar, b: &tch::Tensor| tch::Tensor::f_pow_scalar(s, b)
    );
    operator!(
        reg,
        "==",
        "Elementwise equality, a bool tensor",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_eq_tensor(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_eq(s),
        |s: tch::Scalar, b: &tch::Tensor| b.f_eq(s)
    );
    operator!(
        reg,
        "!=",
        "Elementwise inequality, a bool tensor",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_ne_tensor(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_ne(s),
        |s: tch::Scalar, b: &tch::Tensor| b.f_ne(s)
    );
    operator!(
        reg,
        "<",
        "Elementwise less-than, a bool tensor",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_lt_tensor(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_lt(s),
        |s: tch::Scalar, b: &tch::Tensor| b.f_gt(s)
    );
    operator!(
        reg,
        "<=",
        "Elementwise less-or-equal, a bool tensor",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_le_tensor(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_le(s),
        |s: tch::Scalar, b: &tch::Tensor| b.f_ge(s)
    );
    operator!(
        reg,
        ">",
        "Elementwise greater-than, a bool tensor",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_gt_tensor(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_gt(s),
        |s: tch::Scalar, b: &tch::Tensor| b.f_lt(s)
    );
    operator!(
        reg,
        ">=",
        "Elementwise greater-or-equal, a bool tensor",
        |a: &tch::Tensor, b: &tch::Tensor| a.f_ge_tensor(b),
        |a: &tch::Tensor, s: tch::Scalar| a.f_ge(s),
        |s: tch::Scalar, b: &tch::Tensor| b.f_le(s)
    );

    // Compound assignment works in place, as in PyTorch: `w -= lr * w.grad` inside `no_grad`
    // updates the parameter itself, and every handle on the tensor sees the change.
    for (op, name) in [("+=", "add"), ("-=", "sub"), ("*=", "mul"), ("/=", "div")] {
        let doc = format!(
            "In-place {name} (`x {op} y`, Tensor.{name}_): modifies the tensor itself, so every handle on it sees the change.\n\n```rhai\nlet x = torch::ones([2]);\nlet alias = x;\nx {op} 2;\nprint(alias);\n```"
        );
        reg.func("", op, "x, y", &doc, move |x: &mut T, y: T| -> RResult<()> { inplace(x, name, &y.0) });
        reg.func("", op, "x, y", &doc, move |x: &mut T, y: INT| -> RResult<()> {
            inplace(x, name, &scalar_like(y, x)?)
        });
        reg.func("", op, "x, y", &doc, move |x: &mut T, y: FLOAT| -> RResult<()> {
            inplace(x, name, &scalar_like(y, x)?)
        });
    }
    let doc = "Negation (`-x`).\n\n```rhai\nprint(-torch::tensor([1, -2]));\n```";
    reg.func("", "-", "x", doc, |x: T| ok(x.f_neg()));
    let doc = "Unary plus (`+x`), the tensor itself.\n\n```rhai\nprint(+torch::tensor([1]));\n```";
    reg.func("", "+", "x", doc, |x: T| x);
    let doc = "Logical not of a bool tensor (`!mask`, torch.logical_not).\n\n```rhai\nprint(!torch::tensor([true, false]));\n```";
    reg.func("", "!", "x", doc, |x: T| ok(x.f_logical_not()));
    for (op, name) in [("&", "and"), ("|", "or"), ("^", "xor")] {
        let doc = format!("Elementwise logical {name} of bool tensors (`a {op} b`); bitwise for integer tensors.\n\n```rhai\nlet x = torch::tensor([0.5, 2.0, 3.0]);\nprint((x > 1) {op} (x < 2.5));\n```");
        reg.func("", op, "a, b", &doc, move |a: T, b: T| match name {
            "and" => ok(a.f_bitwise_and_tensor(&b)),
            "or" => ok(a.f_bitwise_or_tensor(&b)),
            _ => ok(a.f_bitwise_xor_tensor(&b)),
        });
    }
    let doc = "Matrix product (torch.matmul), also written `a @ b`.\n\n```rhai\nlet a = torch::ones([2, 3]);\nlet b = torch::ones([3, 4]);\nprint(a.matmul(b).shape);\nprint((a @ b).shape);\n```";
    reg.func("", "matmul", "self, other", doc, |a: &mut T, b: T| ok(a.f_matmul(&b)));
    reg.func("torch", "matmul", "a, b", doc, |a: T, b: T| ok(a.f_matmul(&b)));
    reg.func("", "@", "a, b", doc, |a: T, b: T| ok(a.f_matmul(&b)));
    let doc =
        "Matrix product of 2-D tensors (torch.mm).\n\n```rhai\nprint(torch::eye(2).mm(torch::ones([2, 2])));\n```";
    reg.func("", "mm", "self, other", doc, |a: &mut T, b: T| ok(a.f_mm(&b)));
    let doc = "Batched matrix product of 3-D tensors (torch.bmm).\n\n```rhai\nprint(torch::ones([4, 2, 3]).bmm(torch::ones([4, 3, 5])).shape);\n```";
    reg.func("", "bmm", "self, other", doc, |a: &mut T, b: T| ok(a.f_bmm(&b)));
    let doc = "Dot product of 1-D tensors (torch.dot).\n\n```rhai\nprint(torch::tensor([1.0, 2.0]).dot(torch::tensor([3.0, 4.0])));\n```";
    reg.func("", "dot", "self, other", doc, |a: &mut T, b: T| ok(a.f_dot(&b)));
    let doc = "Outer product of 1-D tensors (torch.outer).\n\n```rhai\nprint(torch::tensor([1, 2]).outer(torch::tensor([1, 10])));\n```";
    reg.func("", "outer", "self, other", doc, |a: &mut T, b: T| ok(a.f_outer(&b)));
}

fn register_math(reg: &mut Registry) {
    unary!(reg;
        "abs" => f_abs, "exp" => f_exp, "log" => f_log, "log2" => f_log2, "log10" => f_log10,
        "log1p" => f_log1p, "expm1" => f_expm1, "sqrt" => f_sqrt, "rsqrt" => f_rsqrt,
        "sin" => f_sin, "cos" => f_cos, "tan" => f_tan, "asin" => f_asin, "acos" => f_acos,
        "atan" => f_atan, "sinh" => f_sinh, "cosh" => f_cosh, "tanh" => f_tanh,
        "sigmoid" => f_sigmoid, "relu" => f_relu, "silu" => f_silu, "floor" => f_floor,
        "ceil" => f_ceil, "round" => f_round, "trunc" => f_trunc, "frac" => f_frac,
        "sign" => f_sign, "neg" => f_neg, "reciprocal" => f_reciprocal, "square" => f_square,
        "erf" => f_erf, "isnan" => f_isnan, "isinf" => f_isinf, "isfinite" => f_isfinite,
        "logical_not" => f_logical_not, "sgn" => f_sgn,
    );
    binary!(reg;
        "add" => f_add, f_add_scalar, "sub" => f_sub, f_sub_scalar, "mul" => f_mul, f_mul_scalar,
        "div" => f_div, f_div_scalar, "pow" => f_pow, f_pow_tensor_scalar,
        "eq" => f_eq_tensor, f_eq, "ne" => f_ne_tensor, f_ne, "lt" => f_lt_tensor, f_lt,
        "le" => f_le_tensor, f_le, "gt" => f_gt_tensor, f_gt, "ge" => f_ge_tensor, f_ge,
        "fmod" => f_fmod_tensor, f_fmod, "remainder" => f_remainder_tensor, f_remainder,
    );
    let doc = "Elementwise maximum of two tensors (torch.maximum).\n\n```rhai\nprint(torch::tensor([1, 5]).maximum(torch::tensor([3, 2])));\n```";
    reg.func("", "maximum", "self, other", doc, |a: &mut T, b: T| ok(a.f_maximum(&b)));
    reg.func("torch", "maximum", "a, b", doc, |a: T, b: T| ok(a.f_maximum(&b)));
    let doc = "Elementwise minimum of two tensors (torch.minimum).\n\n```rhai\nprint(torch::tensor([1, 5]).minimum(torch::tensor([3, 2])));\n```";
    reg.func("", "minimum", "self, other", doc, |a: &mut T, b: T| ok(a.f_minimum(&b)));
    reg.func("torch", "minimum", "a, b", doc, |a: T, b: T| ok(a.f_minimum(&b)));
    let doc = "Elementwise atan2(self, other) (torch.atan2).\n\n```rhai\nprint(torch::tensor([1.0]).atan2(torch::tensor([1.0])));\n```";
    reg.func("", "atan2", "self, other", doc, |a: &mut T, b: T| ok(a.f_atan2(&b)));

    let doc = "GELU activation (torch.nn.functional.gelu); `approximate` is \"none\" (default) or \"tanh\".\n\n```rhai\nlet x = torch::tensor([-1.0, 0.0, 1.0]);\nprint(x.gelu());\nprint(x.gelu(\"tanh\"));\n```";
    reg.func("", "gelu", "self", doc, |x: &mut T| ok(x.f_gelu("none")));
    reg.func("", "gelu", "self, approximate", doc, |x: &mut T, a: &str| {
        if a != "none" && a != "tanh" {
            return Err(err(format!("gelu: approximate must be \"none\" or \"tanh\", got \"{a}\"")));
        }
        ok(x.f_gelu(a))
    });
    let doc = "Softmax along `dim` (torch.softmax).\n\n```rhai\nprint(torch::tensor([1.0, 2.0, 3.0]).softmax(0));\n```";
    reg.func("", "softmax", "self, dim", doc, |x: &mut T, d: INT| ok(x.f_softmax(d, None::<Kind>)));
    reg.func("torch", "softmax", "x, dim", doc, |x: T, d: INT| ok(x.f_softmax(d, None::<Kind>)));
    let doc = "Log-softmax along `dim` (torch.log_softmax).\n\n```rhai\nprint(torch::tensor([1.0, 2.0, 3.0]).log_softmax(0));\n```";
    reg.func("", "log_softmax", "self, dim", doc, |x: &mut T, d: INT| ok(x.f_log_softmax(d, None::<Kind>)));
    reg.func("torch", "log_softmax", "x, dim", doc, |x: T, d: INT| ok(x.f_log_softmax(d, None::<Kind>)));

    let doc = "Clamps values into [min, max] (torch.clamp); `#{min}` or `#{max}` alone clamps one side.\n\n```rhai\nlet x = torch::tensor([-2.0, 0.5, 3.0]);\nprint(x.clamp(0.0, 1.0));\nprint(x.clamp(#{min: 0}));\n```";
    fn clamp(x: &tch::Tensor, lo: Option<f64>, hi: Option<f64>) -> RResult<Tensor> {
        match (lo, hi) {
            (Some(l), Some(h)) => ok(x.f_clamp(l, h)),
            (Some(l), None) => ok(x.f_clamp_min(l)),
            (None, Some(h)) => ok(x.f_clamp_max(h)),
            (None, None) => Err(err("clamp: at least one of min or max must be given")),
        }
    }
    reg.func("", "clamp", "self, min, max", doc, |x: &mut T, l: Dynamic, h: Dynamic| {
        let lo = if l.is_unit() { None } else { Some(number(&l, "clamp")?) };
        let hi = if h.is_unit() { None } else { Some(number(&h, "clamp")?) };
        clamp(&x.0, lo, hi)
    });
    reg.func("", "clamp", "self, opts", doc, |x: &mut T, m: Map| {
        let o = Opts::new(&m, "clamp", &["min", "max"])?;
        clamp(&x.0, o.f64_opt("min")?, o.f64_opt("max")?)
    });
    let doc = "Leaky ReLU with `negative_slope` (default 0.01).\n\n```rhai\nprint(torch::tensor([-1.0, 1.0]).leaky_relu(0.1));\n```";
    reg.func("", "leaky_relu", "self", doc, |x: &mut T| ok(x.f_leaky_relu()));
    reg.func("", "leaky_relu", "self, negative_slope", doc, |x: &mut T, s: FLOAT| {
        ok(x.f_clamp_min(0.0)
            .and_then(|p| x.f_clamp_max(0.0).and_then(|n| n.f_mul_scalar(s)).and_then(|n| p.f_add(&n))))
    });
}

fn register_reductions(reg: &mut Registry) {
    reduction!(reg, "sum", "Sum", |x: &tch::Tensor| x.f_sum(None::<Kind>), |x: &tch::Tensor, d: &[i64], k| x
        .f_sum_dim_intlist(d, k, None::<Kind>));
    reduction!(reg, "mean", "Mean", |x: &tch::Tensor| x.f_mean(None::<Kind>), |x: &tch::Tensor, d: &[i64], k| x
        .f_mean_dim(d, k, None::<Kind>));
    reduction!(
        reg,
        "std",
        "Standard deviation with Bessel's correction",
        |x: &tch::Tensor| x.f_std(true),
        |x: &tch::Tensor, d: &[i64], k| x.f_std_dim(d, true, k)
    );
    reduction!(
        reg,
        "var",
        "Variance with Bessel's correction",
        |x: &tch::Tensor| x.f_var(true),
        |x: &tch::Tensor, d: &[i64], k| x.f_var_dim(d, true, k)
    );
    reduction!(
        reg,
        "amax",
        "Maximum",
        |x: &tch::Tensor| x.f_amax(&[] as &[i64], false),
        |x: &tch::Tensor, d: &[i64], k| x.f_amax(d, k)
    );
    reduction!(
        reg,
        "amin",
        "Minimum",
        |x: &tch::Tensor| x.f_amin(&[] as &[i64], false),
        |x: &tch::Tensor, d: &[i64], k| x.f_amin(d, k)
    );
    reduction!(
        reg,
        "logsumexp",
        "log(sum(exp(x))), computed stably,",
        |x: &tch::Tensor| {
            let all: Vec<i64> = (0..x.dim() as i64).collect();
            x.f_logsumexp(all.as_slice(), false)
        },
        |x: &tch::Tensor, d: &[i64], k| x.f_logsumexp(d, k)
    );

    for (name, is_max) in [("max", true), ("min", false)] {
        let doc = format!(
            "The {name} of all elements; with `dim`, a map `#{{values, indices}}` along that dim (torch.{name}); with a tensor, the elementwise {name}imum.\n\n```rhai\nlet x = torch::tensor([[1, 5], [7, 2]]);\nprint(x.{name}());\nlet r = x.{name}(1);\nprint(r.values);\nprint(r.indices);\n```"
        );
        reg.func("", name, "self", &doc, move |x: &mut T| ok(if is_max { x.f_max() } else { x.f_min() }));
        reg.func("", name, "self, dim", &doc, move |x: &mut T, d: INT| -> RResult<Map> {
            let (v, i) = if is_max { x.f_max_dim(d, false) } else { x.f_min_dim(d, false) }.or_script()?;
            Ok(values_indices(v, i))
        });
        reg.func("", name, "self, dim, keepdim", &doc, move |x: &mut T, d: INT, k: bool| -> RResult<Map> {
            let (v, i) = if is_max { x.f_max_dim(d, k) } else { x.f_min_dim(d, k) }.or_script()?;
            Ok(values_indices(v, i))
        });
        reg.func("", name, "self, other", &doc, move |x: &mut T, o: T| {
            ok(if is_max { x.f_maximum(&o) } else { x.f_minimum(&o) })
        });
        reg.func("torch", name, "x", &doc, move |x: T| ok(if is_max { x.f_max() } else { x.f_min() }));
    }
    for (name, is_max) in [("argmax", true), ("argmin", false)] {
        let doc = format!(
            "Index of the {} value, of the flattened tensor or along `dim` (torch.{name}).\n\n```rhai\nlet x = torch::tensor([[1, 5], [7, 2]]);\nprint(x.{name}());\nprint(x.{name}(1));\nprint(x.{name}(1, true));\n```",
            if is_max { "largest" } else { "smallest" }
        );
        reg.func("", name, "self", &doc, move |x: &mut T| {
            ok(if is_max { x.f_argmax(None, false) } else { x.f_argmin(None, false) })
        });
        reg.func("", name, "self, dim", &doc, move |x: &mut T, d: INT| {
            ok(if is_max { x.f_argmax(d, false) } else { x.f_argmin(d, false) })
        });
        reg.func("", name, "self, dim, keepdim", &doc, move |x: &mut T, d: INT, k: bool| {
            ok(if is_max { x.f_argmax(d, k) } else { x.f_argmin(d, k) })
        });
    }
    let doc = "Product of all elements, or along `dim` (torch.prod).\n\n```rhai\nlet x = torch::tensor([[1, 2], [3, 4]]);\nprint(x.prod());\nprint(x.prod(0));\nprint(x.prod(1, true));\n```";
    reg.func("", "prod", "self", doc, |x: &mut T| ok(x.f_prod(None::<Kind>)));
    reg.func("", "prod", "self, dim", doc, |x: &mut T, d: INT| ok(x.f_prod_dim_int(d, false, None::<Kind>)));
    reg.func("", "prod", "self, dim, keepdim", doc, |x: &mut T, d: INT, k: bool| {
        ok(x.f_prod_dim_int(d, k, None::<Kind>))
    });
    let doc = "Vector p-norm (default 2) of all elements or along `dim` (torch.norm / torch.linalg.vector_norm). `p` may be a number or \"inf\".\n\n```rhai\nlet x = torch::tensor([[3.0, 4.0], [6.0, 8.0]]);\nprint(x.norm());\nprint(x.norm(1));\nprint(x.norm(2, 1));\nprint(x.norm(\"inf\", 1, true));\n```";
    fn p_of(p: &Dynamic) -> RResult<f64> {
        if let Ok(s) = p.clone().into_immutable_string() {
            return match s.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "fro" => Ok(2.0),
                o => Err(err(format!("norm: unknown p '{o}'; use a number, \"inf\", \"-inf\" or \"fro\""))),
            };
        }
        number(p, "norm")
    }
    reg.func("", "norm", "self", doc, |x: &mut T| {
        ok(x.f_reshape([-1]).and_then(|f| f.f_norm_scalaropt_dim(2.0, [0i64].as_slice(), false)))
    });
    reg.func("", "norm", "self, p", doc, |x: &mut T, p: Dynamic| {
        let p = p_of(&p)?;
        ok(x.f_reshape([-1]).and_then(|f| f.f_norm_scalaropt_dim(p, [0i64].as_slice(), false)))
    });
    reg.func("", "norm", "self, p, dim", doc, |x: &mut T, p: Dynamic, d: Dynamic| {
        let dims = int_list(&d, "norm")?;
        ok(x.f_norm_scalaropt_dim(p_of(&p)?, dims.as_slice(), false))
    });
    reg.func("", "norm", "self, p, dim, keepdim", doc, |x: &mut T, p: Dynamic, d: Dynamic, k: bool| {
        let dims = int_list(&d, "norm")?;
        ok(x.f_norm_scalaropt_dim(p_of(&p)?, dims.as_slice(), k))
    });
    let doc = "The `k` largest (or smallest) values along `dim` (default last) as `#{values, indices}` (torch.topk). Options: `dim`, `largest` (true), `sorted` (true).\n\n```rhai\nlet r = torch::tensor([1, 9, 3, 7]).topk(2);\nprint(r.values);\nprint(torch::tensor([1, 9, 3, 7]).topk(2, #{largest: false}).indices);\n```";
    fn topk(x: &tch::Tensor, k: i64, m: &Map) -> RResult<Map> {
        let o = Opts::new(m, "topk", &["dim", "largest", "sorted"])?;
        let (v, i) =
            x.f_topk(k, o.i64_or("dim", -1)?, o.bool_or("largest", true)?, o.bool_or("sorted", true)?).or_script()?;
        Ok(values_indices(v, i))
    }
    reg.func("", "topk", "self, k", doc, |x: &mut T, k: INT| topk(&x.0, k, &none()));
    reg.func("", "topk", "self, k, opts", doc, |x: &mut T, k: INT, m: Map| topk(&x.0, k, &m));
    let doc = "Sorts along `dim` (default last) as `#{values, indices}` (torch.sort); `x.sort(dim)` or options `#{dim, descending, stable}`.\n\n```rhai\nlet r = torch::tensor([3, 1, 2]).sort();\nprint(r.values);\nprint(torch::tensor([3, 1, 2]).sort(#{descending: true}).indices);\n```";
    fn sort(x: &tch::Tensor, m: &Map) -> RResult<Map> {
        let o = Opts::new(m, "sort", &["dim", "descending", "stable"])?;
        let (v, i) = x
            .f_sort_stable(o.bool_or("stable", false)?, o.i64_or("dim", -1)?, o.bool_or("descending", false)?)
            .or_script()?;
        Ok(values_indices(v, i))
    }
    reg.func("", "sort", "self", doc, |x: &mut T| sort(&x.0, &none()));
    reg.func("", "sort", "self, dim", doc, |x: &mut T, d: INT| {
        let mut m = Map::new();
        m.insert("dim".into(), Dynamic::from_int(d));
        sort(&x.0, &m)
    });
    reg.func("", "sort", "self, opts", doc, |x: &mut T, m: Map| sort(&x.0, &m));
    let doc = "Indices that sort along `dim` (default last) (torch.argsort).\n\n```rhai\nprint(torch::tensor([3, 1, 2]).argsort());\n```";
    reg.func("", "argsort", "self", doc, |x: &mut T| ok(x.f_argsort(-1, false)));
    reg.func("", "argsort", "self, dim", doc, |x: &mut T, d: INT| ok(x.f_argsort(d, false)));
    reg.func("", "argsort", "self, dim, descending", doc, |x: &mut T, d: INT, desc: bool| ok(x.f_argsort(d, desc)));
    let doc = "Cumulative sum along `dim` (torch.cumsum).\n\n```rhai\nprint(torch::tensor([1, 2, 3]).cumsum(0));\n```";
    reg.func("", "cumsum", "self, dim", doc, |x: &mut T, d: INT| ok(x.f_cumsum(d, None::<Kind>)));
    let doc =
        "Cumulative product along `dim` (torch.cumprod).\n\n```rhai\nprint(torch::tensor([1, 2, 3]).cumprod(0));\n```";
    reg.func("", "cumprod", "self, dim", doc, |x: &mut T, d: INT| ok(x.f_cumprod(d, None::<Kind>)));
    let doc = "True when any / all elements are true (torch.any / torch.all), as a bool tensor.\n\n```rhai\nlet m = torch::tensor([true, false]);\nprint(m.any());\nprint(m.all());\n```";
    reg.func("", "any", "self", doc, |x: &mut T| ok(x.f_any()));
    reg.func("", "all", "self", doc, |x: &mut T| ok(x.f_all()));
    reg.func("", "any", "self, dim", doc, |x: &mut T, d: INT| ok(x.f_any_dim(d, false)));
    reg.func("", "all", "self, dim", doc, |x: &mut T, d: INT| ok(x.f_all_dim(d, false)));
}

fn register_shape(reg: &mut Registry) {
    shape_arg!(reg, "reshape", "A tensor with the same data and a new shape (torch.reshape); one dim may be -1.\n\n```rhai\nlet x = torch::arange(6);\nprint(x.reshape([2, 3]));\nprint(x.reshape(3, -1).shape);\n```", |x: &tch::Tensor, s: &[i64]| x.f_reshape(s));
    shape_arg!(reg, "view", "A view with a new shape over the same storage (Tensor.view); the tensor must be compatible (contiguous).\n\n```rhai\nprint(torch::arange(6).view(2, 3).shape);\n```", |x: &tch::Tensor, s: &[i64]| x.f_view(s));
    shape_arg!(reg, "permute", "Reorders dimensions (torch.permute).\n\n```rhai\nprint(torch::zeros([2, 3, 4]).permute(2, 0, 1).shape);\nprint(torch::zeros([2, 3]).permute([1, 0]).shape);\n```", |x: &tch::Tensor, s: &[i64]| x.f_permute(s));
    shape_arg!(reg, "expand", "Broadcasts size-1 dims to a larger shape without copying (Tensor.expand); -1 keeps a dim.\n\n```rhai\nprint(torch::tensor([[1], [2]]).expand(2, 3));\n```", |x: &tch::Tensor, s: &[i64]| x.f_expand(s, false));
    shape_arg!(reg, "repeat", "Tiles the tensor `n` times along each dim (Tensor.repeat).\n\n```rhai\nprint(torch::tensor([1, 2]).repeat(2, 2));\n```", |x: &tch::Tensor, s: &[i64]| x.f_repeat(s));
    let doc = "Swaps two dimensions (torch.transpose).\n\n```rhai\nprint(torch::zeros([2, 3, 4]).transpose(0, 2).shape);\n```";
    reg.func("", "transpose", "self, dim0, dim1", doc, |x: &mut T, a: INT, b: INT| ok(x.f_transpose(a, b)));
    let doc =
        "Transpose of a tensor of at most 2 dims (Tensor.t()).\n\n```rhai\nprint(torch::tensor([[1, 2, 3]]).t());\n```";
    reg.func("", "t", "self", doc, |x: &mut T| {
        if x.dim() > 2 {
            return Err(err(format!("t() expects a tensor with <= 2 dimensions, but self is {}D", x.dim())));
        }
        ok(x.f_tr())
    });
    let doc = "Flattens dims `start_dim`..=`end_dim` (default all) into one (torch.flatten).\n\n```rhai\nlet x = torch::zeros([2, 3, 4]);\nprint(x.flatten().shape);\nprint(x.flatten(1).shape);\nprint(x.flatten(0, 1).shape);\n```";
    reg.func("", "flatten", "self", doc, |x: &mut T| ok(x.f_flatten(0, -1)));
    reg.func("", "flatten", "self, start_dim", doc, |x: &mut T, s: INT| ok(x.f_flatten(s, -1)));
    reg.func("", "flatten", "self, start_dim, end_dim", doc, |x: &mut T, s: INT, e: INT| ok(x.f_flatten(s, e)));
    let doc = "Inserts a size-1 dim at `dim` (torch.unsqueeze).\n\n```rhai\nprint(torch::zeros([3]).unsqueeze(0).shape);\n```";
    reg.func("", "unsqueeze", "self, dim", doc, |x: &mut T, d: INT| ok(x.f_unsqueeze(d)));
    let doc = "Removes size-1 dims, all or only `dim` (torch.squeeze).\n\n```rhai\nlet x = torch::zeros([1, 3, 1]);\nprint(x.squeeze().shape);\nprint(x.squeeze(0).shape);\n```";
    reg.func("", "squeeze", "self", doc, |x: &mut T| ok(x.f_squeeze()));
    reg.func("", "squeeze", "self, dim", doc, |x: &mut T, d: INT| ok(x.f_squeeze_dim(d)));
    let doc = "A contiguous copy if needed (Tensor.contiguous).\n\n```rhai\nprint(torch::zeros([2, 3]).t().contiguous().is_contiguous());\n```";
    reg.func("", "contiguous", "self", doc, |x: &mut T| ok(x.f_contiguous()));
    let doc = "A copy with its own storage (Tensor.clone); stays in the autograd graph.\n\n```rhai\nlet a = torch::zeros([2]);\nlet b = a.clone();\nb[0] = 1.0;\nprint(a);\n```";
    reg.func("", "clone", "self", doc, |x: &mut T| ok(x.f_to_dtype(x.kind(), false, true)));

    let doc = "Concatenates tensors along an existing `dim` (default 0) (torch.cat).\n\n```rhai\nlet a = torch::ones([2, 2]);\nprint(torch::cat([a, a]).shape);\nprint(torch::cat([a, a], 1).shape);\n```";
    reg.func("torch", "cat", "tensors", doc, |a: Array| ok(tch::Tensor::f_cat(&tensors(&a, "torch::cat")?, 0)));
    reg.func("torch", "cat", "tensors, dim", doc, |a: Array, d: INT| {
        ok(tch::Tensor::f_cat(&tensors(&a, "torch::cat")?, d))
    });
    let doc = "Stacks tensors of equal shape along a new `dim` (default 0) (torch.stack).\n\n```rhai\nlet a = torch::ones([2]);\nprint(torch::stack([a, a]).shape);\nprint(torch::stack([a, a], 1).shape);\n```";
    reg.func("torch", "stack", "tensors", doc, |a: Array| ok(tch::Tensor::f_stack(&tensors(&a, "torch::stack")?, 0)));
    reg.func("torch", "stack", "tensors, dim", doc, |a: Array, d: INT| {
        ok(tch::Tensor::f_stack(&tensors(&a, "torch::stack")?, d))
    });
    let doc = "Splits into pieces of `split_size` (an int) or of the given sizes (an array) along `dim` (default 0) (torch.split). Returns an array of tensors.\n\n```rhai\nlet x = torch::arange(5);\nprint(x.split(2).len());\nprint(x.split([1, 4])[1]);\n```";
    fn split(x: &tch::Tensor, s: &Dynamic, d: i64) -> RResult<Array> {
        if let Ok(n) = s.as_int() {
            if n <= 0 {
                return Err(err(format!("split: split_size must be positive, got {n}")));
            }
            return Ok(split_result(x.f_split(n, d).or_script()?));
        }
        let sizes = int_list(s, "split")?;
        Ok(split_result(x.f_split_with_sizes(sizes.as_slice(), d).or_script()?))
    }
    reg.func("", "split", "self, split_size", doc, |x: &mut T, s: Dynamic| split(&x.0, &s, 0));
    reg.func("", "split", "self, split_size, dim", doc, |x: &mut T, s: Dynamic, d: INT| split(&x.0, &s, d));
    let doc = "Splits into `chunks` nearly equal pieces along `dim` (default 0) (torch.chunk).\n\n```rhai\nlet parts = torch::arange(6).chunk(3);\nprint(parts[2]);\n```";
    reg.func("", "chunk", "self, chunks", doc, |x: &mut T, n: INT| {
        if n <= 0 {
            return Err(err(format!("chunk: chunks must be positive, got {n}")));
        }
        Ok(split_result(x.f_chunk(n, 0).or_script()?))
    });
    reg.func("", "chunk", "self, chunks, dim", doc, |x: &mut T, n: INT, d: INT| {
        if n <= 0 {
            return Err(err(format!("chunk: chunks must be positive, got {n}")));
        }
        Ok(split_result(x.f_chunk(n, d).or_script()?))
    });
}

fn register_indexing(reg: &mut Registry) {
    let doc = "`x[i]` selects along dim 0 (negative counts from the end); `x[a..b]` slices; `x[mask]` selects where a bool tensor is true; `x[idx]` gathers rows of an int tensor.\n\n```rhai\nlet x = torch::arange(6).reshape(2, 3);\nprint(x[1]);\nprint(x[-1][0]);\nprint(x[0..1]);\nprint(x[x > 3]);\n```";
    reg.index_get(doc, |x: &mut T, i: INT| index::get_int(x, i).or_script());
    reg.index_get(doc, |x: &mut T, r: ExclusiveRange| index::get_range(x, r.start, r.end).or_script());
    reg.index_get(doc, |x: &mut T, m: T| index::get_tensor(x, &m).or_script());
    let doc = "`x[i] = v`, `x[a..b] = v`, `x[mask] = v` write into the tensor in place; `v` is a tensor or a number (broadcast).\n\n```rhai\nlet x = torch::zeros([2, 3]);\nx[0] = 1.0;\nx[1] = torch::tensor([1.0, 2.0, 3.0]);\nx[x > 1.5] = -1;\nprint(x);\n```";
    reg.index_set(doc, |x: &mut T, i: INT, v: Dynamic| {
        index::set_int(x, i, &to_tensor(&v, "index assignment")?).or_script()
    });
    reg.index_set(doc, |x: &mut T, r: ExclusiveRange, v: Dynamic| {
        index::set_range(x, r.start, r.end, &to_tensor(&v, "index assignment")?).or_script()
    });
    reg.index_set(doc, |x: &mut T, m: T, v: Dynamic| {
        index::set_tensor(x, &m, &to_tensor(&v, "index assignment")?).or_script()
    });

    let doc = "Slice `start..end` by `step` along `dim` (like `x[:, start:end:step]`).\n\n```rhai\nlet x = torch::arange(10).reshape(2, 5);\nprint(x.slice(1, 0, 5, 2));\nprint(x.slice(1, 1, 3));\n```";
    fn slice(x: &tch::Tensor, d: i64, s: i64, e: i64, step: i64) -> RResult<Tensor> {
        if step <= 0 {
            return Err(err(format!("slice: step must be positive, got {step}")));
        }
        ok(x.f_slice(d, s, e, step))
    }
    reg.func("", "slice", "self, dim, start, end", doc, |x: &mut T, d: INT, s: INT, e: INT| slice(&x.0, d, s, e, 1));
    reg.func("", "slice", "self, dim, start, end, step", doc, |x: &mut T, d: INT, s: INT, e: INT, st: INT| {
        slice(&x.0, d, s, e, st)
    });
    let doc = "Selects index `index` along `dim`, removing that dim (torch.select).\n\n```rhai\nprint(torch::arange(6).reshape(2, 3).select(1, -1));\n```";
    reg.func("", "select", "self, dim, index", doc, |x: &mut T, d: INT, i: INT| ok(x.f_select(d, i)));
    let doc = "`length` elements from `start` along `dim`, as a view (torch.narrow).\n\n```rhai\nprint(torch::arange(6).narrow(0, 2, 3));\n```";
    reg.func(
        "",
        "narrow",
        "self, dim, start, length",
        doc,
        |x: &mut T, d: INT, s: INT, l: INT| ok(x.f_narrow(d, s, l)),
    );
    let doc = "Rows (or entries along `dim`) picked by an int64 index tensor (torch.index_select).\n\n```rhai\nlet x = torch::arange(6).reshape(3, 2);\nprint(x.index_select(0, torch::tensor([2, 0])));\n```";
    reg.func("", "index_select", "self, dim, index", doc, |x: &mut T, d: INT, i: T| ok(x.f_index_select(d, &i)));
    let doc = "Gathers values along `dim` at `index` (torch.gather).\n\n```rhai\nlet x = torch::tensor([[1, 2], [3, 4]]);\nprint(x.gather(1, torch::tensor([[0, 0], [1, 0]])));\n```";
    reg.func("", "gather", "self, dim, index", doc, |x: &mut T, d: INT, i: T| ok(x.f_gather(d, &i, false)));
    let doc = "Out-of-place scatter: writes `src` (tensor or number) at `index` along `dim` (torch.scatter).\n\n```rhai\nlet x = torch::zeros([2, 3]);\nprint(x.scatter(1, torch::tensor([[0], [2]]), 1.0));\n```";
    reg.func("", "scatter", "self, dim, index, src", doc, |x: &mut T, d: INT, i: T, s: Dynamic| {
        if let Some(src) = s.read_lock::<Tensor>() {
            return ok(x.f_scatter(d, &i, &src.0));
        }
        ok(x.f_scatter_value(d, &i, number(&s, "scatter")?))
    });
    let doc = "Adds `src` at `index` along `dim`, out of place (torch.scatter_add).\n\n```rhai\nprint(torch::zeros([3]).scatter_add(0, torch::tensor([0, 0, 2]), torch::ones([3])));\n```";
    reg.func("", "scatter_add", "self, dim, index, src", doc, |x: &mut T, d: INT, i: T, s: T| {
        ok(x.f_scatter_add(d, &i, &s))
    });
    let doc = "Replaces elements where the bool `mask` is true by `value` (torch.masked_fill).\n\n```rhai\nlet x = torch::tensor([1.0, 2.0, 3.0]);\nprint(x.masked_fill(x > 1.5, 0.0));\n```";
    reg.func("", "masked_fill", "self, mask, value", doc, |x: &mut T, m: T, v: Dynamic| {
        if let Some(t) = v.read_lock::<Tensor>() {
            return ok(x.f_masked_fill_tensor(&m, &t.0));
        }
        ok(x.f_masked_fill(&m, number(&v, "masked_fill")?))
    });
    let doc = "Elements where the bool `mask` is true, flattened (torch.masked_select).\n\n```rhai\nlet x = torch::tensor([1, 2, 3]);\nprint(x.masked_select(x > 1));\n```";
    reg.func("", "masked_select", "self, mask", doc, |x: &mut T, m: T| ok(x.f_masked_select(&m)));
    let doc = "Picks from `x` where `condition` is true, else from `y`; `x` and `y` may be numbers (torch.where).\n\n```rhai\nlet a = torch::tensor([1.0, -2.0, 3.0]);\nprint(torch::where(a > 0, a, 0.0));\n```";
    reg.func("torch", "where", "condition, x, y", doc, |c: T, x: Dynamic, y: Dynamic| {
        let xt = to_tensor(&x, "torch::where")?;
        let yt = to_tensor(&y, "torch::where")?;
        // numbers become 0-dim tensors: cast them to the other operand's dtype like Python scalars
        let (xt, yt) = match (x.is::<Tensor>(), y.is::<Tensor>()) {
            (true, false) => {
                let k = xt.kind();
                (xt, yt.f_to_kind(k).or_script()?)
            }
            (false, true) => {
                let k = yt.kind();
                (xt.f_to_kind(k).or_script()?, yt)
            }
            _ => (xt, yt),
        };
        ok(xt.f_where_self(&c, &yt))
    });
    let doc = "The lower (`tril`) or upper (`triu`) triangle of a matrix, the rest zeroed; `diagonal` shifts the edge (torch.tril / torch.triu).\n\n```rhai\nlet m = torch::ones([3, 3]);\nprint(m.tril());\nprint(m.triu(1));\n```";
    reg.func("", "tril", "self", doc, |x: &mut T| ok(x.f_tril(0)));
    reg.func("", "tril", "self, diagonal", doc, |x: &mut T, d: INT| ok(x.f_tril(d)));
    reg.func("", "triu", "self", doc, |x: &mut T| ok(x.f_triu(0)));
    reg.func("", "triu", "self, diagonal", doc, |x: &mut T, d: INT| ok(x.f_triu(d)));
    let doc = "Samples `num_samples` indices from each row of non-negative weights (torch.multinomial); `replacement` defaults to false.\n\n```rhai\ntorch::manual_seed(0);\nlet idx = torch::tensor([0.1, 0.0, 0.9]).multinomial(2);\nprint(idx.shape);\n```";
    reg.volatile("", "multinomial", "self, num_samples", doc, |x: &mut T, n: INT| ok(x.f_multinomial(n, false)));
    reg.volatile("", "multinomial", "self, num_samples, replacement", doc, |x: &mut T, n: INT, r: bool| {
        ok(x.f_multinomial(n, r))
    });
    let doc = "Indices of nonzero elements, one row per element (torch.nonzero).\n\n```rhai\nprint(torch::tensor([0, 3, 0, 4]).nonzero());\n```";
    reg.func("", "nonzero", "self", doc, |x: &mut T| ok(x.f_nonzero()));
}

fn register_autograd(reg: &mut Registry) {
    reg.getter("requires_grad", "Whether autograd records operations on this tensor.\n\n```rhai\nprint(torch::ones([1], #{requires_grad: true}).requires_grad);\n```", |x: &mut T| x.requires_grad());
    reg.setter("requires_grad", "Turns gradient recording on or off for a leaf tensor (`x.requires_grad = true`).\n\n```rhai\nlet w = torch::ones([2]);\nw.requires_grad = true;\nprint(w.requires_grad);\n```", |x: &mut T, b: bool| -> RResult<()> {
        set_requires_grad(x, b)
    });
    let doc = "Sets `requires_grad` in place and returns the tensor (Tensor.requires_grad_).\n\n```rhai\nlet w = torch::zeros([2]).requires_grad_(true);\nprint(w.requires_grad);\n```";
    reg.func("", "requires_grad_", "self", doc, |x: &mut T| -> RResult<Tensor> {
        set_requires_grad(x, true)?;
        Ok(x.clone())
    });
    reg.func("", "requires_grad_", "self, requires_grad", doc, |x: &mut T, b: bool| -> RResult<Tensor> {
        set_requires_grad(x, b)?;
        Ok(x.clone())
    });
    let doc = "The accumulated gradient, or `()` when there is none yet (Tensor.grad).\n\n```rhai\nlet w = torch::tensor([1.0, 2.0], #{requires_grad: true});\n(w * w).sum().backward();\nprint(w.grad);\n```";
    reg.getter("grad", doc, |x: &mut T| -> Dynamic {
        let g = x.grad();
        if g.defined() {
            Dynamic::from(Tensor::new(g))
        } else {
            Dynamic::UNIT
        }
    });
    let doc = "Computes gradients of this scalar (or, given `gradient`, of any shape) with respect to the leaves that require grad (Tensor.backward).\n\n```rhai\nlet x = torch::tensor([3.0], #{requires_grad: true});\nlet y = x * x;\ny.backward(torch::ones([1]));\nprint(x.grad);\n```";
    reg.func("", "backward", "self", doc, |x: &mut T| -> RResult<()> {
        if x.numel() != 1 {
            return Err(err(format!(
                "grad can be implicitly created only for scalar outputs (this tensor has {} elements); pass a gradient",
                x.numel()
            )));
        }
        if !x.requires_grad() {
            return Err(err("element 0 of tensors does not require grad and does not have a grad_fn"));
        }
        x.f_backward().or_script()
    });
    reg.func("", "backward", "self, gradient", doc, |x: &mut T, g: T| -> RResult<()> {
        if !x.requires_grad() {
            return Err(err("element 0 of tensors does not require grad and does not have a grad_fn"));
        }
        backward_with(&x.0, &g.0).or_script()
    });
    let doc = "A tensor sharing storage but cut from the autograd graph (Tensor.detach).\n\n```rhai\nlet w = torch::ones([1], #{requires_grad: true});\nprint((w * 2).detach().requires_grad);\n```";
    reg.func("", "detach", "self", doc, |x: &mut T| ok(x.f_detach()));
    let doc = "Zeroes this tensor's gradient, if any.\n\n```rhai\nlet w = torch::ones([1], #{requires_grad: true});\n(w * 3).sum().backward();\nw.zero_grad();\nprint(w.grad);\n```";
    reg.func("", "zero_grad", "self", doc, |x: &mut T| {
        let mut t = x.0.shallow_clone();
        t.zero_grad();
    });
    let doc = "Runs `f` with gradient recording off and returns its result (torch.no_grad). A Rhai closure does not see `this`: copy what it needs into a local first (`let net = this.net; torch::no_grad(|| net.forward(x))`).\n\n```rhai\nlet w = torch::ones([1], #{requires_grad: true});\nlet y = torch::no_grad(|| w * 2);\nprint(y.requires_grad);\n```";
    reg.func("torch", "no_grad", "f", doc, |ctx: NativeCallContext, f: FnPtr| -> RResult<Dynamic> {
        let _guard = tch::no_grad_guard();
        f.call_within_context(&ctx, ())
    });
    let doc = "Runs `f` with gradient recording on, also inside `no_grad` (torch.enable_grad).\n\n```rhai\nlet w = torch::ones([1], #{requires_grad: true});\nlet y = torch::no_grad(|| torch::enable_grad(|| w * 2));\nprint(y.requires_grad);\n```";
    reg.func("torch", "enable_grad", "f", doc, |ctx: NativeCallContext, f: FnPtr| -> RResult<Dynamic> {
        let guard = GradModeGuard::set(true);
        let r = f.call_within_context(&ctx, ());
        drop(guard);
        r
    });
    let doc = "Whether gradient recording is on (torch.is_grad_enabled).\n\n```rhai\nprint(torch::is_grad_enabled());\nprint(torch::no_grad(|| torch::is_grad_enabled()));\n```";
    reg.func("torch", "is_grad_enabled", "", doc, GradModeGuard::is_enabled);
}

/// Restores the previous autograd mode when dropped.
struct GradModeGuard(bool);

impl GradModeGuard {
    fn set(on: bool) -> GradModeGuard {
        let prev = Self::is_enabled();
        // SAFETY: plain calls into libtorch's thread-local grad mode.
        unsafe { torch_sys::at_grad_set_enabled(on as i32) };
        GradModeGuard(prev)
    }
    fn is_enabled() -> bool {
        // at_set_grad_mode returns the previous mode; set it back right away.
        unsafe {
            let prev = torch_sys::at_grad_set_enabled(1);
            torch_sys::at_grad_set_enabled(prev);
            prev != 0
        }
    }
}

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        unsafe { torch_sys::at_grad_set_enabled(self.0 as i32) };
    }
}

fn set_requires_grad(x: &Tensor, b: bool) -> RResult<()> {
    if b && !super::options::is_floating(x.kind()) {
        return Err(err(format!(
            "only tensors of floating point dtype can require gradients, not {}",
            dtype_name(x.kind())
        )));
    }
    let leaf = x.f_is_leaf().or_script()?;
    if !leaf && !b {
        return Err(err(
            "you can only change requires_grad flags of leaf variables; use detach() to get a tensor without grad",
        ));
    }
    let _ = x.set_requires_grad(b);
    Ok(())
}

/// `y.backward(g)`: d(sum(y * g)) — the vector-Jacobian product PyTorch computes.
fn backward_with(y: &tch::Tensor, g: &tch::Tensor) -> Result<(), tch::TchError> {
    if y.size() != g.size() {
        return Err(tch::TchError::Shape(format!(
            "Mismatch in shape: grad_output has a shape of {:?} and output has a shape of {:?}",
            g.size(),
            y.size()
        )));
    }
    y.f_mul(&g.f_detach()?)?.f_sum(None::<Kind>)?.f_backward()
}

fn register_output(reg: &mut Registry) {
    let doc = "The value of a one-element tensor as a FLOAT, INT or BOOL (Tensor.item).\n\n```rhai\nprint(torch::tensor([2.5]).item());\nprint(torch::arange(3).sum().item());\n```";
    reg.func("", "item", "self", doc, |x: &mut T| item(&x.0));
    let doc = "The values as (nested) arrays (Tensor.tolist).\n\n```rhai\nprint(torch::tensor([[1, 2], [3, 4]]).to_array());\n```";
    reg.func("", "to_array", "self", doc, |x: &mut T| to_array(&x.0));
    reg.func("", "tolist", "self", doc, |x: &mut T| to_array(&x.0));
    let doc = "True when both tensors have the same shape and values (torch.equal).\n\n```rhai\nprint(torch::ones([2]).equal(torch::ones([2])));\n```";
    reg.func("", "equal", "self, other", doc, |x: &mut T, y: T| -> RResult<bool> {
        if x.size() != y.size() {
            return Ok(false);
        }
        x.f_equal(&y).or_script()
    });
    let doc = "True when all values are close: |x - y| <= atol + rtol * |y| (torch.allclose). Options: `rtol` (1e-5), `atol` (1e-8), `equal_nan` (false).\n\n```rhai\nlet x = torch::tensor([1.0, 2.0]);\nprint(x.allclose(x + 1e-9));\nprint(x.allclose(x + 0.01, #{atol: 0.1}));\n```";
    fn allclose(x: &tch::Tensor, y: &tch::Tensor, m: &Map) -> RResult<bool> {
        let o = Opts::new(m, "allclose", &["rtol", "atol", "equal_nan"])?;
        x.f_allclose(y, o.f64_or("rtol", 1e-5)?, o.f64_or("atol", 1e-8)?, o.bool_or("equal_nan", false)?).or_script()
    }
    reg.func("", "allclose", "self, other", doc, |x: &mut T, y: T| allclose(&x.0, &y.0, &none()));
    reg.func("", "allclose", "self, other, opts", doc, |x: &mut T, y: T, m: Map| allclose(&x.0, &y.0, &m));
    let doc = "The tensor as PyTorch prints it.\n\n```rhai\nlet s = torch::eye(2).to_string();\nprint(s);\n```";
    reg.func("", "to_string", "self", doc, |x: &mut T| super::format::tensor_repr(&x.0));
    reg.func("", "to_debug", "self", doc, |x: &mut T| super::format::tensor_repr(&x.0));
}
