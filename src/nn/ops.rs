//! Custom candle operations for the audio branch, which keeps activations time-major
//! (batch, frames, channels): `unfold` lays each frame's receptive field out as one row, so a
//! convolution over time is a single GEMM (candle's own conv1d is slower and its weight
//! gradient was wrong with padding in our checks), and `bias_pool_relu` fuses the bias, the
//! non-overlapping max-pooling over time and the ReLU that follow it.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("expected an f32 tensor")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("expected a contiguous tensor"),
    }
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// (batch, frames, channels) -> (batch, frames, kernel * channels): row `t` is frames
/// `t - kernel/2 ..= t + kernel/2` side by side, zeros beyond the edges ("same" padding).
struct Unfold {
    kernel: usize,
}

impl CustomOp1 for Unfold {
    fn name(&self) -> &'static str {
        "unfold-time"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, t, c) = layout.shape().dims3()?;
        let x = contiguous_f32(storage, layout)?;
        let k = self.kernel;
        let pad = k / 2;
        let mut out = vec![0.0f32; b * t * k * c];
        out.par_chunks_mut(t * k * c)
            .zip(x.par_chunks(t * c))
            .for_each(|(dst, src)| {
                for frame in 0..t {
                    for j in 0..k {
                        if let Some(s) = (frame + j).checked_sub(pad).filter(|&s| s < t) {
                            let at = (frame * k + j) * c;
                            dst[at..at + c].copy_from_slice(&src[s * c..(s + 1) * c]);
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, t, k * c))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (b, t, c) = arg.dims3()?;
        let k = self.kernel;
        let pad = k / 2;
        let g = values(grad)?;
        let mut out = vec![0.0f32; b * t * c];
        out.par_chunks_mut(t * c)
            .zip(g.par_chunks(t * k * c))
            .for_each(|(dst, src)| {
                for frame in 0..t {
                    for j in 0..k {
                        if let Some(s) = (frame + j).checked_sub(pad).filter(|&s| s < t) {
                            let at = (frame * k + j) * c;
                            dst[s * c..(s + 1) * c]
                                .iter_mut()
                                .zip(&src[at..at + c])
                                .for_each(|(d, v)| *d += v);
                        }
                    }
                }
            });
        Ok(Some(Tensor::from_vec(out, (b, t, c), arg.device())?))
    }
}

/// (batch, frames, channels) + bias (channels) -> (batch, frames / pool, channels): the
/// bias added, max over each run of `pool` frames (a trailing remainder is dropped), then
/// ReLU — one pass instead of three candle operations and their backward passes.
struct BiasPoolRelu {
    pool: usize,
}

impl CustomOp2 for BiasPoolRelu {
    fn name(&self) -> &'static str {
        "bias-pool-relu-time"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, t, c) = l1.shape().dims3()?;
        let x = contiguous_f32(s1, l1)?;
        let bias = contiguous_f32(s2, l2)?;
        let p = self.pool;
        let to = t / p;
        let mut out = vec![0.0f32; b * to * c];
        if to > 0 {
            out.par_chunks_mut(to * c)
                .zip(x.par_chunks(t * c))
                .for_each(|(dst, src)| {
                    for (i, row) in dst.chunks_exact_mut(c).enumerate() {
                        row.copy_from_slice(&src[i * p * c..(i * p + 1) * c]);
                        for j in 1..p {
                            let frame = &src[(i * p + j) * c..(i * p + j + 1) * c];
                            // Written as a comparison (not f32::max) so it compiles to a vector max.
                            row.iter_mut()
                                .zip(frame)
                                .for_each(|(m, &v)| *m = if v > *m { v } else { *m });
                        }
                        row.iter_mut().zip(bias).for_each(|(m, &bv)| *m = (*m + bv).max(0.0));
                    }
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, to, c))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, t, c) = arg.dims3()?;
        let p = self.pool;
        let to = t / p;
        let (x, y, g, bv) = (values(arg)?, values(res)?, values(grad)?, values(bias)?);
        let mut out = vec![0.0f32; b * t * c];
        // Per-song bias gradients summed in song order afterwards: a parallel reduce would
        // add in an order that depends on scheduling, and results must not.
        let mut per_song = vec![0.0f32; b * c];
        if to > 0 {
            out.par_chunks_mut(t * c)
                .zip(per_song.par_chunks_mut(c))
                .zip(x.par_chunks(t * c))
                .zip(y.par_chunks(to * c).zip(g.par_chunks(to * c)))
                .for_each(|(((dst, bias_grad), src), (ys, gs))| {
                    for i in 0..to {
                        for ch in 0..c {
                            // ReLU passed nothing back for a non-positive output.
                            if ys[i * c + ch] <= 0.0 {
                                continue;
                            }
                            // The frame holding the max takes the gradient (the first on ties,
                            // as PyTorch); `x + bias` reproduces the forward's sum exactly.
                            let j = (0..p)
                                .find(|j| src[(i * p + j) * c + ch] + bv[ch] == ys[i * c + ch])
                                .unwrap_or(0);
                            dst[(i * p + j) * c + ch] = gs[i * c + ch];
                            bias_grad[ch] += gs[i * c + ch];
                        }
                    }
                });
        }
        let mut bias_grad = vec![0.0f32; c];
        for song in per_song.chunks_exact(c) {
            bias_grad.iter_mut().zip(song).for_each(|(a, v)| *a += v);
        }
        Ok((
            Some(Tensor::from_vec(out, (b, t, c), arg.device())?),
            Some(Tensor::from_vec(bias_grad, c, arg.device())?),
        ))
    }
}

pub fn unfold(x: &Tensor, kernel: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Unfold { kernel })
}

pub fn bias_pool_relu(x: &Tensor, bias: &Tensor, pool: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op2(bias, BiasPoolRelu { pool })
}
