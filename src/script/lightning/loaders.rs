//! The script's data as the Trainer's loaders: `data::loader(...)` values and plain arrays of
//! batches, moved to the device with their tensors.
use super::*;

/// A `data::loader(...)` as the Trainer's loader: batches assembled on worker threads, in an order
/// fixed by (seed, epoch); over an iterable dataset without a length, `len` is None and the
/// epoch ends with the stream (or at `limit_train_batches` / `max_steps`).
struct DataLoaderAdapter {
    handle: crate::data::api::LoaderHandle,
    iter: Option<crate::data::loader::EpochIter>,
}

impl BatchLoader<Dynamic> for DataLoaderAdapter {
    fn len(&self) -> Option<usize> {
        self.handle.0.borrow().len()
    }
    fn start_epoch(&mut self, epoch: usize) -> Result<(), String> {
        let mut l = self.handle.0.borrow_mut();
        l.set_epoch(epoch as u64);
        self.iter = Some(l.iter_epoch(epoch as u64));
        Ok(())
    }
    fn next_batch(&mut self) -> Option<Result<Dynamic, String>> {
        self.iter.as_mut()?.next().map(|r| r.map(crate::data::api::batch_to_dynamic).map_err(|e| e.to_string()))
    }
    fn set_distributed(&mut self, rank: usize, world_size: usize) -> Result<(), String> {
        self.handle.0.borrow_mut().set_distributed(rank, world_size).map_err(|e| e.to_string())
    }
    fn last_batch_indices(&self) -> Option<Vec<usize>> {
        self.iter.as_ref()?.last_indices().map(|i| i.to_vec())
    }
    fn traits(&self) -> Option<crate::trainer::module::LoaderTraits> {
        let l = self.handle.0.borrow();
        Some(crate::trainer::module::LoaderTraits {
            num_workers: l.options().num_workers,
            shuffled: l.sampler().is_random(),
            workers_help: l.per_sample_work() && !l.thread_bound(),
            thread_bound: l.thread_bound(),
        })
    }
}

fn trainer_loader(d: &Dynamic) -> Option<Box<dyn BatchLoader<Dynamic>>> {
    crate::data::api::loader_of(d)
        .map(|handle| Box::new(DataLoaderAdapter { handle, iter: None }) as Box<dyn BatchLoader<Dynamic>>)
}

/// The loaders a `*_dataloader` hook's value stands for: a DataLoader, an array of DataLoaders,
/// or an array of batches.
pub(super) fn loaders_from(d: Dynamic, what: &str) -> Result<Vec<Box<dyn BatchLoader<Dynamic>>>, String> {
    if d.is_unit() {
        return Ok(vec![]);
    }
    if let Some(l) = trainer_loader(&d) {
        return Ok(vec![l]);
    }
    if let Some(a) = d.clone().try_cast::<Array>() {
        // `[]` is no loaders (as in Lightning), not one loader of no batches
        if a.is_empty() {
            return Ok(vec![]);
        }
        // an array of loaders (several val/test loaders), or an array of batches
        let loaders: Vec<_> = a.iter().map(trainer_loader).collect();
        if loaders.iter().all(|l| l.is_some()) {
            return Ok(loaders.into_iter().flatten().collect());
        }
        return Ok(vec![Box::new(ArrayLoader { items: a, pos: 0 })]);
    }
    Err(format!(
        "{what} must return a DataLoader, an array of DataLoaders, or an array of batches; got {}",
        d.type_name()
    ))
}

/// The batch count of the (first) loader a `train_dataloader` value stands for, if known.
pub fn loader_len(d: &Dynamic) -> Result<Option<usize>, String> {
    let loaders = loaders_from(d.clone(), "train_dataloader")?;
    Ok(loaders.first().and_then(|l| l.len()))
}

/// A Rhai array of batches used as a loader (any iterable of batches works in Lightning).
struct ArrayLoader {
    items: Array,
    pos: usize,
}

impl BatchLoader<Dynamic> for ArrayLoader {
    fn len(&self) -> Option<usize> {
        Some(self.items.len())
    }
    fn start_epoch(&mut self, _epoch: usize) -> Result<(), String> {
        self.pos = 0;
        Ok(())
    }
    fn next_batch(&mut self) -> Option<Result<Dynamic, String>> {
        let b = self.items.get(self.pos)?.clone();
        self.pos += 1;
        Some(Ok(b))
    }
    fn set_distributed(&mut self, rank: usize, world_size: usize) -> Result<(), String> {
        // Each rank takes every world_size-th batch, padded by wrapping around so all ranks run
        // the same number of steps (DistributedSampler's padding).
        if world_size > 1 && !self.items.is_empty() {
            let n = self.items.len().div_ceil(world_size);
            let all = std::mem::take(&mut self.items);
            self.items = (0..n).map(|k| all[(k * world_size + rank) % all.len()].clone()).collect();
        }
        Ok(())
    }
}

pub(super) fn map_tensors(
    d: Dynamic,
    f: &dyn Fn(&tch::Tensor) -> Result<tch::Tensor, tch::TchError>,
) -> Result<Dynamic, String> {
    if let Some(t) = d.read_lock::<Tensor>() {
        return f(&t.0)
            .map(|t| Dynamic::from(Tensor::new(t)))
            .map_err(|e| crate::tensor::clean_torch_message(&e.to_string()));
    }
    if d.is_array() {
        let a = d.cast::<Array>();
        return a.into_iter().map(|x| map_tensors(x, f)).collect::<Result<Array, _>>().map(Dynamic::from_array);
    }
    if d.is_map() {
        let m = d.cast::<Map>();
        let mut out = Map::new();
        for (k, v) in m {
            out.insert(k, map_tensors(v, f)?);
        }
        return Ok(Dynamic::from_map(out));
    }
    Ok(d)
}

pub(super) fn first_tensor_rows(d: &Dynamic) -> Option<usize> {
    if let Some(t) = d.read_lock::<Tensor>() {
        return if t.dim() > 0 { Some(t.size()[0] as usize) } else { Some(1) };
    }
    if let Some(a) = d.read_lock::<Array>() {
        return a.iter().find_map(first_tensor_rows);
    }
    if let Some(m) = d.read_lock::<Map>() {
        return m.values().find_map(first_tensor_rows);
    }
    None
}
