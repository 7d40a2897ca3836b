//! Winograd's minimal filtering F(4, 3) for the width-3 convolutions over time: four output
//! frames from six transformed input points, so the convolution's multiplications, forward
//! and in both gradients, are 6 GEMMs over a quarter of the frames each (1.5 T C O) instead of
//! one over every frame with three times the inputs (3 T C O): half the arithmetic.
//!
//! A tile is four consecutive output frames `4τ .. 4τ + 3` of one song and reads the six
//! input frames `4τ - 1 .. 4τ + 4` ("same" padding: zeros outside the song). With the
//! transforms of Lavin & Gray (2016), for every tile and channel,
//! `Y = Aᵀ [(G W) ⊙ (Bᵀ d)]`; across channels each of the six points ξ is a matrix product
//! `M_ξ = V_ξ U_ξ` of the transformed inputs `V_ξ` (tiles x inputs) and weights
//! `U_ξ = Σ_j G_ξj W_j` (inputs x outputs). The backward pass runs the adjoints: `dM = A dY`,
//! `dU_ξ = V_ξᵀ dM_ξ`, `dW_j = Σ_ξ G_ξj dU_ξ`, `dV_ξ = dM_ξ U_ξᵀ` and `dX = B dV` summed over
//! the overlapping tiles. The transforms are additions of whole channel rows (a few percent of
//! the GEMMs' work). Rounding differs from the direct convolution by about 1e-6 relative
//! (a test checks it against [`super::ops`]'s unfolded GEMM).

use super::ops::{Stored, sgemm, sgemm_on};
use rayon::prelude::*;

/// Output frames per tile.
pub const TILE: usize = 4;
/// Transformed points per tile (TILE + kernel - 1).
pub const POINTS: usize = 6;

const BT: [[f32; POINTS]; POINTS] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

const G: [[f32; 3]; POINTS] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

const AT: [[f32; POINTS]; TILE] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// Tiles of a song of `t` frames (the last one may reach past its end).
pub fn tiles(t: usize) -> usize {
    t.div_ceil(TILE)
}

/// `dst += a src`, vectorised.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn axpy(dst: &mut [f32], a: f32, src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += a * s);
}

/// Input frame `k` of tile `tile` (0..6), if it lies inside a song of `t` frames.
fn frame_of(tile: usize, k: usize, t: usize) -> Option<usize> {
    (tile * TILE + k).checked_sub(1).filter(|&f| f < t)
}

/// The weights' transform: `w` (3 inputs x outputs, the kernel's three frames stacked as
/// [`super::ops::conv_pool_relu`] stores them) to `U` (6 x inputs x outputs).
pub fn transform_weights(w: &[f32], io: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; POINTS * io];
    u.par_chunks_mut(io).zip(G.par_iter()).for_each(|(dst, g)| {
        for (j, &coef) in g.iter().enumerate() {
            if coef != 0.0 {
                axpy(dst, coef, &w[j * io..(j + 1) * io]);
            }
        }
    });
    u
}

/// The adjoint of [`transform_weights`]: `dU` (6 x inputs x outputs) to `dW` (3 inputs x
/// outputs).
fn weight_gradients(du: &[f32], io: usize) -> Vec<f32> {
    let mut dw = vec![0.0f32; 3 * io];
    dw.par_chunks_mut(io).enumerate().for_each(|(j, dst)| {
        for (xi, g) in G.iter().enumerate() {
            if g[j] != 0.0 {
                axpy(dst, g[j], &du[xi * io..(xi + 1) * io]);
            }
        }
    });
    dw
}

/// The input transform of a block of songs: `x` (songs x t x c) into `v[ξ]` (songs x tiles x
/// c) for each point ξ.
fn transform_input(x: &[f32], (t, c): (usize, usize), v: &mut [&mut [f32]]) {
    let n = tiles(t);
    for (s, song) in x.chunks_exact(t * c).enumerate() {
        for tile in 0..n {
            let at = (s * n + tile) * c;
            for (xi, coefs) in BT.iter().enumerate() {
                let dst = &mut v[xi][at..at + c];
                dst.fill(0.0);
                for (k, &coef) in coefs.iter().enumerate() {
                    if let Some(f) = frame_of(tile, k, t).filter(|_| coef != 0.0) {
                        axpy(dst, coef, &song[f * c..(f + 1) * c]);
                    }
                }
            }
        }
    }
}

/// The output transform of a block of songs: `m` (6 x songs x tiles x o, one block) to `y`
/// (songs x t x o); output frames past a song's end are not written.
fn transform_output(m: &[f32], (songs, t, o): (usize, usize, usize), y: &mut [f32]) {
    let n = tiles(t);
    let plane = songs * n * o;
    for s in 0..songs {
        for tile in 0..n {
            let at = (s * n + tile) * o;
            for (i, coefs) in AT.iter().enumerate() {
                let frame = tile * TILE + i;
                if frame >= t {
                    break;
                }
                let dst = &mut y[(s * t + frame) * o..(s * t + frame + 1) * o];
                dst.fill(0.0);
                for (xi, &coef) in coefs.iter().enumerate() {
                    if coef != 0.0 {
                        axpy(dst, coef, &m[xi * plane + at..xi * plane + at + o]);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`transform_output`] for one song: `dy` (t x o) to `dm[ξ]` (tiles x o).
fn output_gradients(dy: &[f32], (t, o): (usize, usize), dm: &mut [&mut [f32]]) {
    for tile in 0..tiles(t) {
        for (xi, dst) in dm.iter_mut().enumerate() {
            let dst = &mut dst[tile * o..(tile + 1) * o];
            dst.fill(0.0);
            for (i, coefs) in AT.iter().enumerate() {
                let frame = tile * TILE + i;
                if frame < t && coefs[xi] != 0.0 {
                    axpy(dst, coefs[xi], &dy[frame * o..(frame + 1) * o]);
                }
            }
        }
    }
}

/// The adjoint of [`transform_input`] for song `s`: `dv` (6 x batch x tiles x c, whole planes
/// of `plane` values) to `dx` (t x c), each frame summed over the tiles that read it.
fn input_gradients(dv: &[f32], plane: usize, (s, t, c): (usize, usize, usize), dx: &mut [f32]) {
    let n = tiles(t);
    dx.fill(0.0);
    for tile in 0..n {
        let at = (s * n + tile) * c;
        for k in 0..POINTS {
            let Some(f) = frame_of(tile, k, t) else { continue };
            let dst = &mut dx[f * c..(f + 1) * c];
            for (xi, coefs) in BT.iter().enumerate() {
                if coefs[k] != 0.0 {
                    axpy(dst, coefs[k], &dv[xi * plane + at..xi * plane + at + c]);
                }
            }
        }
    }
}

/// Each of the six planes (whole batch) split into consecutive chunks of `chunk` values: the
/// chunks of one block (or song) across the planes, block by block.
fn split_planes(v: &mut [f32], plane: usize, chunk: usize) -> Vec<Vec<&mut [f32]>> {
    let blocks = plane.div_ceil(chunk.max(1));
    let mut out: Vec<Vec<&mut [f32]>> = (0..blocks).map(|_| Vec::with_capacity(POINTS)).collect();
    for p in v.chunks_mut(plane.max(1)) {
        for (block, piece) in p.chunks_mut(chunk.max(1)).enumerate() {
            out[block].push(piece);
        }
    }
    out
}

/// Songs per task in the forward pass: enough for GEMMs of about 192 rows (tiles), few enough
/// that every thread gets a block.
pub fn songs_per_block(b: usize, t: usize) -> usize {
    let by_rows = 192usize.div_ceil(tiles(t).max(1));
    let by_threads = b.div_ceil(rayon::current_num_threads().max(1));
    by_rows.min(by_threads).max(1)
}

/// The forward convolution of `x` (b x t x c) with the transformed weights `u` (6 x c x o),
/// in parallel blocks of `songs` songs: each block's convolution (before the bias), `y`
/// (songs x t x o), is handed to `each_block` with the block's item of `outputs` (one per
/// block). Returns the transformed inputs `V` (6 x b x tiles x c), which the backward pass
/// needs.
pub fn forward<P: Send>(
    x: &[f32],
    u: &[f32],
    (b, t, c, o): (usize, usize, usize, usize),
    songs: usize,
    outputs: impl IndexedParallelIterator<Item = P>,
    each_block: impl Fn(P, &[f32]) + Sync,
) -> Vec<f32> {
    let n = tiles(t);
    let plane = b * n * c;
    let mut v = vec![0.0f32; POINTS * plane];
    split_planes(&mut v, plane, songs * n * c)
        .into_par_iter()
        .zip(x.par_chunks(songs * t * c))
        .zip(outputs)
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(m, y), ((mut vb, xs), item)| {
                let here = xs.len() / (t * c);
                let rows = here * n;
                transform_input(xs, (t, c), &mut vb);
                m.resize(POINTS * rows * o, 0.0);
                for (xi, vx) in vb.iter().enumerate() {
                    let mx = &mut m[xi * rows * o..(xi + 1) * rows * o];
                    let ux = &u[xi * c * o..(xi + 1) * c * o];
                    sgemm_on((rows, o, c), vx, Stored::AsIs, ux, Stored::AsIs, mx, false, false);
                }
                y.resize(here * t * o, 0.0);
                transform_output(m, (here, t, o), y);
                each_block(item, y);
            },
        );
    v
}

/// One GEMM (m x n = op(A) op(B), see [`sgemm`]) per point: `a` and `b` hold six
/// operands each, one after the other.
fn per_point((m, n, k): (usize, usize, usize), a: &[f32], a_stored: Stored, b: &[f32], b_stored: Stored) -> Vec<f32> {
    let mut out = vec![0.0f32; POINTS * m * n];
    for ((cx, ax), bx) in out.chunks_mut(m * n).zip(a.chunks(m * k)).zip(b.chunks(k * n)) {
        sgemm((m, n, k), ax, a_stored, bx, b_stored, cx, false);
    }
    out
}

/// The backward pass from `dy` (b x t x o, the gradient of the convolution's output before
/// the bias), the forward pass's `v` and the transformed weights `u`: the weights' gradient
/// (3 c x o) and, when `input_grad`, the input's (b x t x c).
pub fn backward(
    dy: &[f32],
    v: &[f32],
    u: &[f32],
    (b, t, c, o): (usize, usize, usize, usize),
    input_grad: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let n = tiles(t);
    let rows = b * n;
    let mut dm = vec![0.0f32; POINTS * rows * o];
    split_planes(&mut dm, rows * o, n * o)
        .into_par_iter()
        .zip(dy.par_chunks(t * o))
        .for_each(|(mut dms, dys)| output_gradients(dys, (t, o), &mut dms));
    let du = per_point((c, o, rows), v, Stored::Transposed, &dm, Stored::AsIs);
    let dw = weight_gradients(&du, c * o);
    let dx = input_grad.then(|| {
        let dv = per_point((rows, c, o), &dm, Stored::AsIs, u, Stored::Transposed);
        let mut dx = vec![0.0f32; b * t * c];
        dx.par_chunks_mut(t * c)
            .enumerate()
            .for_each(|(s, dst)| input_gradients(&dv, rows * c, (s, t, c), dst));
        dx
    });
    (dw, dx)
}
