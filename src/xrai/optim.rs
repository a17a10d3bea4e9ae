//! Adam with per-group learning rates, optional global gradient-norm clipping and AMSGrad
//! (candle-nn's `AdamW` has neither, and defaults to weight decay 0.01; this has none).

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

pub struct ParamGroup {
    pub name: String,
    pub vars: Vec<Var>,
    pub lr: f64,
}

struct State {
    m: Tensor,
    v: Tensor,
    vmax: Option<Tensor>,
}

pub struct Adam {
    pub groups: Vec<ParamGroup>,
    state: Vec<Vec<State>>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub clip: Option<f64>,
    pub amsgrad: bool,
    pub step: usize,
}

/// What one optimiser step saw.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl Adam {
    pub fn new(groups: Vec<ParamGroup>, clip: Option<f64>, amsgrad: bool) -> Result<Adam> {
        let state = groups
            .iter()
            .map(|g| {
                g.vars
                    .iter()
                    .map(|v| {
                        let z = v.as_tensor().zeros_like()?;
                        Ok(State {
                            m: z.clone(),
                            v: z.clone(),
                            vmax: amsgrad.then(|| z.clone()),
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Adam {
            groups,
            state,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            clip,
            amsgrad,
            step: 0,
        })
    }

    /// The moments as named tensors (`<group>.<index>.m|v|vmax`), for checkpoints: a resumed
    /// run continues with the same Adam state instead of restarting its moment estimates.
    pub fn state_tensors(&self) -> std::collections::HashMap<String, Tensor> {
        let mut out = std::collections::HashMap::new();
        for (g, states) in self.groups.iter().zip(&self.state) {
            for (i, st) in states.iter().enumerate() {
                out.insert(format!("{}.{i}.m", g.name), st.m.clone());
                out.insert(format!("{}.{i}.v", g.name), st.v.clone());
                if let Some(vm) = &st.vmax {
                    out.insert(format!("{}.{i}.vmax", g.name), vm.clone());
                }
            }
        }
        out
    }

    /// Restores moments saved by [`Adam::state_tensors`]; shapes must match.
    pub fn load_state_tensors(&mut self, tensors: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        for (g, states) in self.groups.iter().zip(self.state.iter_mut()) {
            for (i, st) in states.iter_mut().enumerate() {
                let (dims, device) = (st.m.dims().to_vec(), st.m.device().clone());
                let get = |k: &str| -> Result<Tensor> {
                    let key = format!("{}.{i}.{k}", g.name);
                    let t = tensors
                        .get(&key)
                        .ok_or_else(|| candle_core::Error::Msg(format!("optimizer state has no {key}")))?;
                    if t.dims() != dims.as_slice() {
                        candle_core::bail!("optimizer state {key}: shape {:?}, expected {dims:?}", t.dims());
                    }
                    t.to_device(&device)
                };
                st.m = get("m")?;
                st.v = get("v")?;
                if st.vmax.is_some() {
                    st.vmax = Some(get("vmax")?);
                }
            }
        }
        Ok(())
    }

    /// One step with the gradients of a backward pass.
    pub fn step(&mut self, grads: &GradStore) -> Result<StepInfo> {
        let grads: Vec<Option<Tensor>> = self.vars().map(|v| grads.get(v.as_tensor()).cloned()).collect();
        self.apply(&grads)
    }

    /// The parameters in group order: the order of [`Adam::flat_gradient`]'s buffer.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.groups.iter().flat_map(|g| g.vars.iter())
    }

    /// Every parameter's gradient in one flat buffer, in [`Adam::vars`] order (zeros for a
    /// parameter the loss did not reach): what data-parallel ranks sum.
    pub fn flat_gradient(&self, grads: &GradStore) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for v in self.vars() {
            match grads.get(v.as_tensor()) {
                Some(g) => out.extend(g.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?),
                None => out.extend(std::iter::repeat_n(0.0f32, v.elem_count())),
            }
        }
        Ok(out)
    }

    /// One step with gradients given as a flat buffer in [`Adam::vars`] order.
    pub fn step_flat(&mut self, flat: &[f32]) -> Result<StepInfo> {
        let mut grads = Vec::new();
        let mut at = 0usize;
        for v in self.vars() {
            let n = v.elem_count();
            let chunk = flat
                .get(at..at + n)
                .ok_or_else(|| candle_core::Error::Msg("the flat gradient is shorter than the parameters".into()))?;
            grads.push(Some(Tensor::from_slice(chunk, v.shape(), v.device())?));
            at += n;
        }
        if at != flat.len() {
            candle_core::bail!("the flat gradient has {} values, the parameters {at}", flat.len());
        }
        self.apply(&grads)
    }

    /// The Adam update with one gradient per parameter in [`Adam::vars`] order (None: the loss
    /// did not reach it, the parameter and its moments are left as they are); the global norm
    /// is taken before clipping.
    fn apply(&mut self, grads: &[Option<Tensor>]) -> Result<StepInfo> {
        self.step += 1;
        let mut sq = 0f64;
        for g in grads.iter().flatten() {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
        let grad_norm = sq.sqrt();
        let scale = match self.clip {
            Some(c) if grad_norm > c => c / grad_norm,
            _ => 1.0,
        };
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let mut grads = grads.iter();
        for (g, states) in self.groups.iter().zip(self.state.iter_mut()) {
            for (var, st) in g.vars.iter().zip(states.iter_mut()) {
                let Some(Some(grad)) = grads.next() else {
                    continue;
                };
                let grad = if scale != 1.0 { (grad * scale)? } else { grad.clone() };
                st.m = ((&st.m * b1)? + (&grad * (1.0 - b1))?)?.detach();
                st.v = ((&st.v * b2)? + (grad.sqr()? * (1.0 - b2))?)?.detach();
                let v_used = match &st.vmax {
                    Some(vm) => {
                        let vm = vm.maximum(&st.v)?.detach();
                        st.vmax = Some(vm.clone());
                        vm
                    }
                    None => st.v.clone(),
                };
                let denom = ((v_used / bc2)?.sqrt()? + self.eps)?;
                let update = ((&st.m / bc1)? / denom)?;
                var.set(&(var.as_tensor().detach() - (update * g.lr)?)?)?;
            }
        }
        Ok(StepInfo { grad_norm })
    }
}
