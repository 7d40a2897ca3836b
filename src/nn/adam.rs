//! Adam with decoupled weight decay (AdamW; weight decay 0 is the paper's Adam), with its
//! moment estimates kept as plain vectors so checkpoints can store them and a resumed run
//! continues exactly. Updates run in place over each parameter's values, in parallel.

use crate::error::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use rayon::prelude::*;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Adam {
    /// Steps taken (for bias correction).
    pub step: u64,
    /// First and second moment estimates, one vector per parameter (store order).
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl Adam {
    pub fn new(vars: &[(String, Var)]) -> Self {
        Adam {
            step: 0,
            m: vars.iter().map(|(_, v)| vec![0.0; v.elem_count()]).collect(),
            v: vars.iter().map(|(_, v)| vec![0.0; v.elem_count()]).collect(),
        }
    }

    /// One step on the gradients in `grads`, first scaled down to a global L2 norm of at
    /// most `clip_norm` (0: unclipped). Parameters without a gradient (frozen) are skipped.
    pub fn update(
        &mut self,
        vars: &[(String, Var)],
        grads: &GradStore,
        learning_rate: f64,
        weight_decay: f64,
        clip_norm: f64,
    ) -> Result<()> {
        let mut flat: Vec<Option<Vec<f32>>> = Vec::with_capacity(vars.len());
        for (_, var) in vars {
            flat.push(match grads.get(var.as_tensor()) {
                Some(g) => Some(g.flatten_all()?.to_vec1::<f32>()?),
                None => None,
            });
        }
        let clip = if clip_norm > 0.0 {
            let norm = flat
                .iter()
                .flatten()
                .map(|g| g.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
                .sum::<f64>()
                .sqrt();
            if norm > clip_norm {
                (clip_norm / norm) as f32
            } else {
                1.0
            }
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let step_size = (learning_rate / (1.0 - BETA1.powi(t))) as f32;
        let v_correction = (1.0 / (1.0 - BETA2.powi(t))).sqrt() as f32;
        let decay = (1.0 - learning_rate * weight_decay) as f32;
        let (b1, b2, eps) = (BETA1 as f32, BETA2 as f32, EPSILON as f32);
        for (k, ((_, var), grad)) in vars.iter().zip(flat).enumerate() {
            let Some(mut grad) = grad else {
                continue;
            };
            if clip != 1.0 {
                grad.iter_mut().for_each(|g| *g *= clip);
            }
            let mut values = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            values
                .par_chunks_mut(4096)
                .zip(self.m[k].par_chunks_mut(4096))
                .zip(self.v[k].par_chunks_mut(4096))
                .zip(grad.par_chunks(4096))
                .for_each(|(((p, m), v), g)| {
                    for i in 0..p.len() {
                        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                        // PyTorch's AdamW: eps is added after the bias correction of v.
                        p[i] = p[i] * decay - step_size * m[i] / (v[i].sqrt() * v_correction + eps);
                    }
                });
            var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// One Adam step by hand: with m0 = v0 = 0 the first step moves each parameter by
    /// lr * g / (|g| + eps') — about lr * sign(g).
    #[test]
    fn first_step_moves_by_learning_rate() {
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0, 3.0], &Device::Cpu).unwrap()).unwrap();
        let vars = vec![("w".to_string(), var.clone())];
        let loss = (var.as_tensor() * Tensor::new(&[2.0f32, -0.5, 0.0], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let mut adam = Adam::new(&vars);
        adam.update(&vars, &grads, 0.1, 0.0, 0.0).unwrap();
        let after = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!((after[0] - 0.9).abs() < 1e-6, "{after:?}");
        assert!((after[1] - -1.9).abs() < 1e-6, "{after:?}");
        assert_eq!(after[2], 3.0); // zero gradient: no move
    }

    /// Clipping scales the gradient, which Adam's first step cannot see (it moves by lr *
    /// sign), so check the moments: m = (1 - beta1) * clipped gradient.
    #[test]
    fn clipping_scales_the_gradient_to_the_norm() {
        let var = Var::from_tensor(&Tensor::new(&[0.0f32, 0.0], &Device::Cpu).unwrap()).unwrap();
        let vars = vec![("w".to_string(), var.clone())];
        let loss = (var.as_tensor() * Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let mut adam = Adam::new(&vars);
        adam.update(&vars, &grads, 0.1, 0.0, 1.0).unwrap(); // norm 5 -> 1
        let m = &adam.m[0];
        assert!(
            (m[0] - 0.1 * 0.6).abs() < 1e-7 && (m[1] - 0.1 * 0.8).abs() < 1e-7,
            "{m:?}"
        );
    }
}
