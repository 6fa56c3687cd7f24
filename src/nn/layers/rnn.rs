//! `nn.RNN`, `nn.LSTM`, `nn.GRU` through ATen's fused multi-layer kernels with flat weights.
use super::{empty, Opts};
use crate::nn::init;
use crate::tensor::Result;
use crate::tensor_err;

/// An RNN's configuration.
#[derive(Clone, Debug)]
pub struct Rnn {
    /// "RNN_TANH", "RNN_RELU", "LSTM" or "GRU".
    pub mode: String,
    pub input_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub bias: bool,
    pub batch_first: bool,
    pub dropout: f64,
    pub bidirectional: bool,
}

impl Rnn {
    pub fn gates(&self) -> i64 {
        match self.mode.as_str() {
            "LSTM" => 4,
            "GRU" => 3,
            _ => 1,
        }
    }
    pub fn directions(&self) -> i64 {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.hidden_size <= 0 || self.num_layers <= 0 || self.input_size < 0 {
            return Err(tensor_err!("hidden_size and num_layers must be positive, input_size non-negative"));
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            return Err(tensor_err!(
                "dropout should be a number in range [0, 1] representing the probability of an element being zeroed"
            ));
        }
        Ok(())
    }

    /// Parameter names in PyTorch's order: `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`,
    /// `bias_hh_l0`, then `…_reverse` for the backward direction, layer by layer.
    pub fn param_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for l in 0..self.num_layers {
            for d in 0..self.directions() {
                let suffix = if d == 1 { "_reverse" } else { "" };
                out.push(format!("weight_ih_l{l}{suffix}"));
                out.push(format!("weight_hh_l{l}{suffix}"));
                if self.bias {
                    out.push(format!("bias_ih_l{l}{suffix}"));
                    out.push(format!("bias_hh_l{l}{suffix}"));
                }
            }
        }
        out
    }

    /// All weights ~ U(-1/√hidden, 1/√hidden), drawn in parameter order like `reset_parameters`.
    pub fn init(&self, o: Opts) -> Result<Vec<(String, tch::Tensor)>> {
        self.validate()?;
        let g = self.gates() * self.hidden_size;
        let stdv = 1.0 / (self.hidden_size as f64).sqrt();
        let mut out = Vec::new();
        for name in self.param_names() {
            let layer: i64 = name
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .trim_end_matches("_reverse")
                .parse()
                .unwrap_or(0);
            let in_size = if layer == 0 { self.input_size } else { self.hidden_size * self.directions() };
            let shape = if name.starts_with("weight_ih") {
                vec![g, in_size]
            } else if name.starts_with("weight_hh") {
                vec![g, self.hidden_size]
            } else {
                vec![g]
            };
            out.push((name, empty(&shape, o)?));
        }
        for (_, t) in &out {
            init::uniform_(t, -stdv, stdv)?;
        }
        Ok(out)
    }

    /// Runs the RNN. `x` is (L, N, H_in) — (N, L, H_in) with `batch_first` — or unbatched
    /// (L, H_in). `hx` is h0 (and c0 for LSTM), zeros when absent. Returns the output and the
    /// final states (h_n, and c_n for LSTM).
    pub fn forward(
        &self,
        x: &tch::Tensor,
        params: &[tch::Tensor],
        hx: Option<&[tch::Tensor]>,
        training: bool,
    ) -> Result<(tch::Tensor, Vec<tch::Tensor>)> {
        let dims = x.dim();
        if dims != 2 && dims != 3 {
            return Err(tensor_err!(
                "expected 2D (unbatched) or 3D (batched) input, got {dims}D input of shape {:?}",
                x.size()
            ));
        }
        let last = x.size()[dims - 1];
        if last != self.input_size {
            return Err(tensor_err!(
                "expected input last dim {} (input_size), got {last} (input shape {:?})",
                self.input_size,
                x.size()
            ));
        }
        let batched = dims == 3;
        let x = if batched { x.shallow_clone() } else { x.f_unsqueeze(if self.batch_first { 0 } else { 1 })? };
        let batch = x.size()[if self.batch_first { 0 } else { 1 }];
        let state_shape = [self.num_layers * self.directions(), batch, self.hidden_size];
        let n_states = if self.mode == "LSTM" { 2 } else { 1 };
        let states: Vec<tch::Tensor> = match hx {
            Some(h) => {
                if h.len() != n_states {
                    return Err(tensor_err!("expected {n_states} initial state tensor(s), got {}", h.len()));
                }
                h.iter()
                    .map(|t| {
                        let t = if batched { t.shallow_clone() } else { t.f_unsqueeze(1)? };
                        if t.size() != state_shape {
                            return Err(tensor_err!("Expected hidden size {state_shape:?}, got {:?}", t.size()));
                        }
                        Ok(t)
                    })
                    .collect::<Result<_>>()?
            }
            None => (0..n_states)
                .map(|_| tch::Tensor::f_zeros(state_shape, (x.kind(), x.device())))
                .collect::<std::result::Result<_, _>>()?,
        };
        let (l, bi, bf, p) = (self.num_layers, self.bidirectional, self.batch_first, self.dropout);
        let (out, mut hs) = match self.mode.as_str() {
            "LSTM" => {
                let (o, h, c) = x.f_lstm(&states, params, self.bias, l, p, training, bi, bf)?;
                (o, vec![h, c])
            }
            "GRU" => {
                let (o, h) = x.f_gru(&states[0], params, self.bias, l, p, training, bi, bf)?;
                (o, vec![h])
            }
            "RNN_RELU" => {
                let (o, h) = x.f_rnn_relu(&states[0], params, self.bias, l, p, training, bi, bf)?;
                (o, vec![h])
            }
            _ => {
                let (o, h) = x.f_rnn_tanh(&states[0], params, self.bias, l, p, training, bi, bf)?;
                (o, vec![h])
            }
        };
        if !batched {
            let out = out.f_squeeze_dim(if bf { 0 } else { 1 })?;
            for h in hs.iter_mut() {
                *h = h.f_squeeze_dim(1)?;
            }
            return Ok((out, hs));
        }
        Ok((out, hs))
    }
}
