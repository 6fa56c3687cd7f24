//! Classification inputs into states, as torchmetrics formats them: float preds outside [0, 1] are
//! logits (sigmoid for binary and multilabel, softmax over the class dim for multiclass curves),
//! binary / multilabel probabilities are thresholded, multiclass scores `[N, C, ...]` become labels
//! by arg-max (or, with `top_k`, the target when it is among the k best, else the best), integer
//! preds are labels, and entries whose target is `ignore_index` are left out.
use super::{Classification, State, Task};
use crate::tensor::Result;
use crate::tensor_err;
use tch::{Kind as K, Tensor};

fn is_float(t: &Tensor) -> bool {
    t.is_floating_point()
}

fn truth(t: &Tensor) -> Result<bool> {
    Ok(t.f_int64_value(&[])? != 0)
}

/// torchmetrics' `normalize_logits_if_needed`: sigmoid (or softmax over dim 1) when any value is
/// outside [0, 1].
fn normalize(t: &Tensor, softmax: bool) -> Result<Tensor> {
    if t.numel() == 0 || !truth(&t.f_lt(0)?.f_logical_or(&t.f_gt(1)?)?.f_any()?)? {
        return Ok(t.shallow_clone());
    }
    Ok(if softmax { t.f_softmax(1, t.kind())? } else { t.f_sigmoid()? })
}

/// An integer (or bool) tensor as int64.
fn labels(t: &Tensor, what: &str) -> Result<Tensor> {
    if is_float(t) || t.kind() == K::ComplexFloat || t.kind() == K::ComplexDouble {
        return Err(tensor_err!("{what} must be an integer tensor of labels, got {:?}", t.kind()));
    }
    Ok(t.f_to_kind(K::Int64)?)
}

/// Fails unless every value of an int64 tensor is in `lo..hi`.
fn check_range(t: &Tensor, lo: i64, hi: i64, what: &str, ignore: Option<i64>) -> Result<()> {
    if t.numel() == 0 {
        return Ok(());
    }
    let (min, max) = (t.f_min()?.f_int64_value(&[])?, t.f_max()?.f_int64_value(&[])?);
    if min < lo || max >= hi {
        let ig = ignore.map(|i| format!(" (or ignore_index {i})")).unwrap_or_default();
        return Err(tensor_err!("{what} must hold values in [{lo}, {}]{ig}, found values in [{min}, {max}]", hi - 1));
    }
    Ok(())
}

fn same_shape(p: &Tensor, t: &Tensor) -> Result<()> {
    if p.size() != t.size() {
        return Err(tensor_err!("preds and target must have the same shape, got {:?} and {:?}", p.size(), t.size()));
    }
    Ok(())
}

/// Entries (rows of `x`, elements of `t`) whose target is not `ignore`.
fn keep(x: &Tensor, t: &Tensor, ignore: Option<i64>) -> Result<(Tensor, Tensor)> {
    let Some(i) = ignore else { return Ok((x.shallow_clone(), t.shallow_clone())) };
    let idx = t.f_ne(i)?.f_nonzero()?.f_squeeze_dim(1)?;
    Ok((x.f_index_select(0, &idx)?, t.f_index_select(0, &idx)?))
}

/// Binary / multilabel preds as 0/1 labels: probabilities (or logits) thresholded, or labels checked.
fn binary_labels(c: &Classification, preds: &Tensor) -> Result<Tensor> {
    if is_float(preds) {
        return Ok(normalize(preds, false)?.f_gt(c.threshold)?.f_to_kind(K::Int64)?);
    }
    let p = labels(preds, "preds")?;
    check_range(&p, 0, 2, "integer preds", None)?;
    Ok(p)
}

/// Multiclass preds and target as flat labels without the ignored entries.
fn multiclass_labels(c: &Classification, preds: &Tensor, target: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = c.num_classes;
    if is_float(preds) {
        if preds.dim() != target.dim() + 1 || preds.size().get(1) != Some(&n) {
            return Err(tensor_err!(
                "float preds of a multiclass metric are scores of shape [N, {n}, ...] for a target of shape [N, ...]; got preds {:?} and target {:?}",
                preds.size(),
                target.size()
            ));
        }
        let mut rest = preds.size();
        rest.remove(1);
        if rest != target.size() {
            return Err(tensor_err!("preds {:?} do not match target {:?}", preds.size(), target.size()));
        }
        let scores = preds.f_movedim([1], [-1])?.f_reshape([-1, n])?;
        let (scores, t) = keep(&scores, &target.f_reshape([-1])?, c.ignore_index)?;
        let p = if c.top_k == 1 {
            scores.f_argmax(1, false)?
        } else {
            let (_, idx) = scores.f_topk(c.top_k, 1, true, true)?;
            let hit = idx.f_eq_tensor(&t.f_unsqueeze(1)?)?.f_any_dim(1, false)?;
            t.f_where_self(&hit, &idx.f_select(1, 0)?)?
        };
        return Ok((p, t));
    }
    if c.top_k > 1 {
        return Err(tensor_err!("top_k > 1 needs float scores of shape [N, {n}, ...], not integer labels"));
    }
    same_shape(preds, target)?;
    let p = labels(preds, "preds")?.f_reshape([-1])?;
    let (p, t) = keep(&p, &target.f_reshape([-1])?, c.ignore_index)?;
    check_range(&p, 0, n, "integer preds", None)?;
    Ok((p, t))
}

/// The confusion-matrix state of one batch: binary `[2, 2]`, multiclass `[C, C]`, multilabel
/// `[L, 2, 2]`, rows indexed by target.
pub fn confusion_state(c: &Classification, preds: &Tensor, target: &Tensor) -> Result<State> {
    let target = labels(target, "target")?;
    let n = c.num_classes;
    let cm = match c.task {
        Task::Binary => {
            same_shape(preds, &target)?;
            let p = binary_labels(c, preds)?.f_reshape([-1])?;
            let (p, t) = keep(&p, &target.f_reshape([-1])?, c.ignore_index)?;
            check_range(&t, 0, 2, "target", c.ignore_index)?;
            t.f_mul_scalar(2)?.f_add(&p)?.f_bincount::<Tensor>(None, 4)?.f_reshape([2, 2])?
        }
        Task::Multiclass => {
            let (p, t) = multiclass_labels(c, preds, &target)?;
            check_range(&t, 0, n, "target", c.ignore_index)?;
            t.f_mul_scalar(n)?.f_add(&p)?.f_bincount::<Tensor>(None, n * n)?.f_reshape([n, n])?
        }
        Task::Multilabel => {
            multilabel_shape(preds, &target, n)?;
            let p = binary_labels(c, preds)?.f_movedim([1], [-1])?.f_reshape([-1, n])?;
            let t = target.f_movedim([1], [-1])?.f_reshape([-1, n])?;
            let label = Tensor::f_arange(n, (K::Int64, t.device()))?.f_mul_scalar(4)?;
            let code = t.f_mul_scalar(2)?.f_add(&p)?.f_add(&label)?.f_reshape([-1])?;
            let (code, t) = keep(&code, &t.f_reshape([-1])?, c.ignore_index)?;
            check_range(&t, 0, 2, "target", c.ignore_index)?;
            code.f_bincount::<Tensor>(None, 4 * n)?.f_reshape([n, 2, 2])?
        }
    };
    Ok(State::Confusion(cm))
}

/// The prediction/target state of one batch for curve metrics (AUROC, average precision): binary
/// preds `[M]`, multiclass `[M, C]` probabilities, multilabel `[M, L]` (ignored entries kept and
/// left out per label at compute, as torchmetrics).
pub fn curve_state(c: &Classification, preds: &Tensor, target: &Tensor) -> Result<State> {
    if !is_float(preds) {
        return Err(tensor_err!("preds must be float probabilities or logits, got {:?}", preds.kind()));
    }
    let target = labels(target, "target")?;
    let n = c.num_classes;
    let (p, t) = match c.task {
        Task::Binary => {
            same_shape(preds, &target)?;
            let (p, t) = keep(&preds.f_reshape([-1])?, &target.f_reshape([-1])?, c.ignore_index)?;
            check_range(&t, 0, 2, "target", c.ignore_index)?;
            (normalize(&p, false)?, t)
        }
        Task::Multiclass => {
            let mut rest = preds.size();
            if preds.dim() != target.dim() + 1 || rest.get(1) != Some(&n) {
                return Err(tensor_err!(
                    "multiclass preds are scores of shape [N, {n}, ...] for a target of shape [N, ...]; got preds {:?} and target {:?}",
                    preds.size(),
                    target.size()
                ));
            }
            rest.remove(1);
            if rest != target.size() {
                return Err(tensor_err!("preds {:?} do not match target {:?}", preds.size(), target.size()));
            }
            let scores = preds.f_movedim([1], [-1])?.f_reshape([-1, n])?;
            let (p, t) = keep(&scores, &target.f_reshape([-1])?, c.ignore_index)?;
            check_range(&t, 0, n, "target", c.ignore_index)?;
            (normalize(&p, true)?, t)
        }
        Task::Multilabel => {
            multilabel_shape(preds, &target, n)?;
            let p = preds.f_movedim([1], [-1])?.f_reshape([-1, n])?;
            let t = target.f_movedim([1], [-1])?.f_reshape([-1, n])?;
            let valid = match c.ignore_index {
                Some(i) => t.f_masked_select(&t.f_ne(i)?)?,
                None => t.shallow_clone(),
            };
            check_range(&valid, 0, 2, "target", c.ignore_index)?;
            (normalize(&p, false)?, t)
        }
    };
    Ok(State::Curve { preds: vec![p.f_detach()?], target: vec![t] })
}

/// Multilabel preds and target: the same shape, `[N, num_labels, ...]`.
fn multilabel_shape(preds: &Tensor, target: &Tensor, n: i64) -> Result<()> {
    same_shape(preds, target)?;
    if preds.dim() < 2 || preds.size()[1] != n {
        return Err(tensor_err!("multilabel preds have shape [N, {n}, ...] (num_labels {n}), got {:?}", preds.size()));
    }
    Ok(())
}
