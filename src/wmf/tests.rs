//! Checks against an independent dense reference: the closed-form per-row solution
//! x_u = (Y^T C_u Y + lambda I)^-1 Y^T C_u p_u computed in f64 by Gaussian elimination.

#![allow(clippy::needless_range_loop)]

use super::*;
use crate::parallel::ignore_progress;
use rand::SeedableRng;

fn small_matrix() -> Csr {
    // 7 users x 9 items; user 5 and item 8 have no interactions; one stored zero.
    let t = [
        (0, 0, 3.0),
        (0, 2, 1.0),
        (0, 7, 12.0),
        (1, 1, 1.0),
        (1, 2, 2.0),
        (2, 0, 1.0),
        (2, 3, 5.0),
        (2, 4, 1.0),
        (3, 5, 2.0),
        (3, 6, 1.0),
        (4, 0, 7.0),
        (4, 1, 1.0),
        (4, 6, 3.0),
        (6, 2, 1.0),
        (6, 3, 0.0),
        (6, 7, 2.0),
    ];
    Csr::from_triplets(7, 9, &t).unwrap()
}

fn params(solver: Solver) -> WmfParams {
    WmfParams {
        factors: 4,
        regularization: 0.1,
        alpha: 2.0,
        solver,
        seed: 7,
        ..WmfParams::default()
    }
}

/// Solve A x = b densely in f64 (A symmetric positive definite, small).
fn dense_solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap();
        a.swap(col, piv);
        b.swap(col, piv);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            for k in col..n {
                a[row][k] -= f * a[col][k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| a[i][k] * x[k]).sum();
        x[i] = (b[i] - s) / a[i][i];
    }
    x
}

/// The exact half-step for every row of `m` given `y`, with dense confidences.
fn dense_half_step(m: &Csr, y: &[f32], p: &WmfParams) -> Vec<f32> {
    let k = p.factors;
    let mut out = Vec::new();
    for row in 0..m.n_rows {
        let mut a = vec![vec![0f64; k]; k];
        let mut b = vec![0f64; k];
        for j in 0..m.n_cols {
            let r = m
                .view()
                .row(row)
                .0
                .iter()
                .position(|&c| c as usize == j)
                .map(|t| m.view().row(row).1[t]);
            let r = r.unwrap_or(0.0);
            let c = p.confidence_of(r) as f64;
            let pref = if r > 0.0 { 1.0 } else { 0.0 };
            let yj = &y[j * k..(j + 1) * k];
            for s in 0..k {
                b[s] += c * pref * yj[s] as f64;
                for t in 0..k {
                    a[s][t] += c * yj[s] as f64 * yj[t] as f64;
                }
            }
        }
        for s in 0..k {
            a[s][s] += p.regularization as f64;
        }
        out.extend(dense_solve(a, b).into_iter().map(|v| v as f32));
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The users' half-sweep of `prepared` against `y` into `x`, Woodbury's table in `table`.
fn solve_users(x: &mut [f32], y: &[f32], prepared: &Prepared<'_>, p: &WmfParams, table: &mut Vec<f32>) -> Result<()> {
    let users = (prepared.users(), prepared.user_conf());
    sweep::solve_side_keeping(x, (y, p.factors), users, p, table)
}

fn half_step(m: &Csr, y: &[f32], p: &WmfParams, start: Vec<f32>) -> Vec<f32> {
    let prepared = prepare(p, m.view()).unwrap();
    let mut x = start;
    solve_users(&mut x, y, &prepared, p, &mut Vec::new()).unwrap();
    x
}

#[test]
fn cholesky_half_step_matches_dense_closed_form() {
    let m = small_matrix();
    let p = params(Solver::Cholesky);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let y: Vec<f32> = (0..9 * 4).map(|_| rng.random::<f32>() - 0.5).collect();
    let x = half_step(&m, &y, &p, vec![0.0; 7 * 4]);
    let want = dense_half_step(&m, &y, &p);
    assert!(max_abs_diff(&x, &want) < 1e-4, "{x:?} vs {want:?}");
    // The user with no plays gets the regularised solution: exactly zero, not NaN.
    assert!(x[5 * 4..6 * 4].iter().all(|&v| v == 0.0));
}

#[test]
fn item_half_step_matches_dense_closed_form() {
    let m = small_matrix();
    let p = params(Solver::Cholesky);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x: Vec<f32> = (0..7 * 4).map(|_| rng.random::<f32>() - 0.5).collect();
    let t = m.view().transpose();
    let prepared = prepare(&p, m.view()).unwrap();
    let mut y = vec![0f32; 9 * 4];
    sweep::solve_side_keeping(
        &mut y,
        (&x, 4),
        (prepared.items.view(), prepared.item_conf()),
        &p,
        &mut Vec::new(),
    )
    .unwrap();
    assert!(max_abs_diff(&y, &dense_half_step(&t, &x, &p)) < 1e-4);
}

/// A half-step by the conjugate gradient alone, every row (no Woodbury rows).
fn cg_only_half_step(m: &Csr, y: &[f32], p: &WmfParams, start: Vec<f32>, steps: usize) -> Vec<f32> {
    let prepared = prepare(p, m.view()).unwrap();
    let (users, conf) = (prepared.users(), prepared.user_conf());
    let a = sweep::regularized_gram(y, p.factors, p.regularization);
    let mut x = start;
    for r in sweep::blocks(users) {
        let block = cg::Block {
            first_row: r.start,
            y,
            dim: p.factors,
            a: &a,
            m: users,
            conf,
        };
        cg::solve_block(&block, &mut x[r.start * p.factors..r.end * p.factors], steps);
    }
    x
}

#[test]
fn conjugate_gradient_converges_to_the_exact_solution() {
    let m = small_matrix();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let y: Vec<f32> = (0..9 * 4).map(|_| rng.random::<f32>() - 0.5).collect();
    let start: Vec<f32> = (0..7 * 4).map(|_| rng.random::<f32>()).collect();
    let exact = half_step(&m, &y, &params(Solver::Cholesky), vec![0.0; 28]);
    // k steps of CG solve a k-dimensional SPD system exactly (up to rounding)...
    let p = params(Solver::Cg { steps: 8 });
    let cg = cg_only_half_step(&m, &y, &p, start.clone(), 8);
    assert!(max_abs_diff(&cg, &exact) < 1e-4, "{cg:?} vs {exact:?}");
    // ...and fewer steps move the warm start towards it.
    let one = cg_only_half_step(&m, &y, &p, start.clone(), 1);
    assert!(max_abs_diff(&one, &exact) < max_abs_diff(&start, &exact));
}

#[test]
fn a_row_too_long_to_gather_is_solved_in_place() {
    // One user with 20,000 plays (past cg::MAX_GATHER) beside two ordinary ones: the long
    // row's factors are read in place, and CG still reaches the exact solution.
    let n_items = 20_000;
    let mut m = Csr::with_capacity(n_items, 3, n_items + 4);
    m.push_row((0..n_items as i32).map(|j| (j, 1.0 + (j % 5) as f32)));
    m.push_row([(3, 2.0), (9, 1.0)]);
    m.push_row([(0, 4.0), (19_999, 1.0)]);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let y: Vec<f32> = (0..n_items * 4).map(|_| rng.random::<f32>() - 0.5).collect();
    let exact = dense_half_step(&m, &y, &params(Solver::Cholesky));
    let cg = cg_only_half_step(&m, &y, &params(Solver::Cg { steps: 8 }), vec![0.0; 12], 8);
    assert!(max_abs_diff(&cg, &exact) < 1e-4, "{cg:?} vs {exact:?}");
}

#[test]
fn rows_with_few_interactions_are_solved_exactly_by_woodbury() {
    // 40 users with 0..16 plays of 60 items, 8 factors: with 1 CG step, the rows within
    // woodbury::limit(8, 1) interactions are the closed-form solution; the others are not.
    let k = 8;
    let limit = woodbury::limit(k, 1);
    assert!((2..16).contains(&limit), "{limit}");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut t = Vec::new();
    for u in 0..40u32 {
        let n = (u % 17) as usize;
        let mut items: Vec<u32> = (0..60).collect();
        for i in 0..n {
            let j = rng.random_range(i..60);
            items.swap(i, j);
            t.push((u, items[i], 1.0 + (rng.random::<f32>() * 9.0).floor()));
        }
    }
    let m = Csr::from_triplets(40, 60, &t).unwrap();
    let p = WmfParams {
        factors: k,
        alpha: 5.0,
        ..params(Solver::Cg { steps: 1 })
    };
    let y: Vec<f32> = (0..60 * k).map(|_| rng.random::<f32>() - 0.5).collect();
    let start: Vec<f32> = (0..40 * k).map(|_| rng.random::<f32>() - 0.5).collect();
    let x = half_step(&m, &y, &p, start.clone());
    let want = dense_half_step(&m, &y, &p);
    let (mut exact_rows, mut cg_rows) = (0, 0);
    for u in 0..40 {
        let (got, closed) = (&x[u * k..(u + 1) * k], &want[u * k..(u + 1) * k]);
        let scale = closed.iter().fold(1f32, |a, v| a.max(v.abs()));
        if m.view().row_nnz(u) <= limit {
            assert!(
                max_abs_diff(got, closed) < 1e-4 * scale,
                "row {u}: {got:?} vs {closed:?}"
            );
            exact_rows += 1;
        } else {
            assert!(max_abs_diff(got, closed) > 1e-4 * scale, "row {u} took one CG step");
            cg_rows += 1;
        }
    }
    assert!(exact_rows > 5 && cg_rows > 5);
    // The CG rows are those of the CG alone; and threads do not change a bit.
    let cg = cg_only_half_step(&m, &y, &p, start.clone(), 1);
    for u in (0..40).filter(|&u| m.view().row_nnz(u) > limit) {
        assert_eq!(x[u * k..(u + 1) * k], cg[u * k..(u + 1) * k]);
    }
    let one = crate::parallel::Threads::new(1).unwrap();
    assert_eq!(one.run(|| half_step(&m, &y, &p, start.clone())), x);
    // Nor does a table buffer left by another half-sweep (larger or smaller, and dirty); its
    // memory comes back for the next one.
    let prepared = prepare(&p, m.view()).unwrap();
    for stale in [vec![f32::NAN; 5_000], vec![f32::NAN; 3]] {
        let (mut again, mut table) = (start.clone(), stale);
        solve_users(&mut again, &y, &prepared, &p, &mut table).unwrap();
        assert_eq!(again, x);
        assert!(table.capacity() >= 60 * k / 2, "capacity {}", table.capacity());
    }
}

#[test]
fn training_loss_matches_dense_objective() {
    let m = small_matrix();
    let p = params(Solver::Cholesky);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x: Vec<f32> = (0..7 * 4).map(|_| rng.random::<f32>() - 0.5).collect();
    let y: Vec<f32> = (0..9 * 4).map(|_| rng.random::<f32>() - 0.5).collect();
    let (mut total, mut weight) = (0f64, 0f64);
    for u in 0..7 {
        for i in 0..9 {
            let (cols, vals) = m.view().row(u);
            let r = cols.iter().position(|&c| c as usize == i).map_or(0.0, |t| vals[t]);
            let c = p.confidence_of(r) as f64;
            let s: f64 = (0..4).map(|d| x[u * 4 + d] as f64 * y[i * 4 + d] as f64).sum();
            let pref = if r > 0.0 { 1.0 } else { 0.0 };
            total += c * (pref - s) * (pref - s);
            weight += c;
        }
    }
    let norms: f64 = x.iter().chain(&y).map(|&v| v as f64 * v as f64).sum();
    let want = (total + p.regularization as f64 * norms) / weight;
    let got = training_loss(&p, m.view(), &x, &y, &Threads::new(1).unwrap()).unwrap();
    assert!((got - want).abs() < 1e-5 * want.abs(), "{got} vs {want}");
}

#[test]
fn loss_decreases_for_both_solvers() {
    let m = small_matrix();
    for solver in [Solver::Cg { steps: 3 }, Solver::Cholesky] {
        let p = WmfParams {
            iterations: 6,
            compute_loss: true,
            ..params(solver)
        };
        let (_, report) = fit(&p, m.view(), None, &Threads::new(0).unwrap(), &mut ignore_progress).unwrap();
        assert_eq!(report.losses.len(), 6);
        for w in report.losses.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-5), "{solver:?}: {:?}", report.losses);
        }
    }
}

#[test]
fn deterministic_for_seed_and_independent_of_threads() {
    let m = small_matrix();
    let p = WmfParams {
        iterations: 4,
        ..params(Solver::Cg { steps: 3 })
    };
    let run = |threads| {
        fit(
            &p,
            m.view(),
            None,
            &Threads::new(threads).unwrap(),
            &mut ignore_progress,
        )
        .unwrap()
        .0
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a, b);
    assert_eq!(a, c);
    let other = fit(
        &WmfParams { seed: 8, ..p.clone() },
        m.view(),
        None,
        &Threads::new(1).unwrap(),
        &mut ignore_progress,
    );
    assert_ne!(a.user_factors, other.unwrap().0.user_factors);
}

#[test]
fn progress_can_stop_the_fit() {
    let m = small_matrix();
    let p = WmfParams {
        iterations: 10,
        ..params(Solver::Cholesky)
    };
    let mut seen = Vec::new();
    let mut stop_at_3 = |s: Step| {
        seen.push(s.done);
        if s.done == 3 { Err(Error::Interrupted) } else { Ok(()) }
    };
    let (model, report) = fit(&p, m.view(), None, &Threads::new(1).unwrap(), &mut stop_at_3).unwrap();
    assert_eq!(seen, vec![1, 2, 3]);
    assert!(report.interrupted);
    assert_eq!(report.iterations_done, 3);
    assert!(model.user_factors.iter().all(|v| v.is_finite()));
}

#[test]
fn rejects_bad_input_with_named_problems() {
    let m = small_matrix();
    let t = Threads::new(1).unwrap();
    let err = |p: &WmfParams, csr: CsrRef<'_>| fit(p, csr, None, &t, &mut ignore_progress).unwrap_err().to_string();
    assert!(
        err(
            &WmfParams {
                factors: 0,
                ..params(Solver::Cholesky)
            },
            m.view()
        )
        .contains("factors")
    );
    assert!(
        err(
            &WmfParams {
                alpha: f32::NAN,
                ..params(Solver::Cholesky)
            },
            m.view()
        )
        .contains("alpha")
    );
    assert!(
        err(
            &WmfParams {
                regularization: -1.0,
                ..params(Solver::Cholesky)
            },
            m.view()
        )
        .contains("regularization")
    );
    assert!(err(&params(Solver::Cg { steps: 0 }), m.view()).contains("cg_steps"));
    let empty = Csr::from_triplets(0, 3, &[]).unwrap();
    assert!(err(&params(Solver::Cholesky), empty.view()).contains("empty"));
    let mut neg = small_matrix();
    neg.data[3] = -1.0;
    assert!(err(&params(Solver::Cholesky), neg.view()).contains("negative"));
    neg.data[3] = f32::NAN;
    assert!(err(&params(Solver::Cholesky), neg.view()).contains("NaN"));
    let warm = fit(
        &params(Solver::Cholesky),
        m.view(),
        Some((vec![0.0; 3], vec![0.0; 3])),
        &t,
        &mut ignore_progress,
    );
    assert!(warm.unwrap_err().to_string().contains("warm-start"));
}

#[test]
fn singular_systems_are_reported_not_nan() {
    // lambda = 0 with an empty row makes that row's system singular.
    let m = small_matrix();
    let p = WmfParams {
        regularization: 0.0,
        ..params(Solver::Cholesky)
    };
    let y = vec![0f32; 9 * 4];
    let prepared = prepare(&p, m.view()).unwrap();
    let mut x = vec![0f32; 7 * 4];
    let err = solve_users(&mut x, &y, &prepared, &p, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("positive definite"));
    // CG stops such rows where they are instead of dividing by zero.
    let p = WmfParams {
        regularization: 0.0,
        ..params(Solver::Cg { steps: 3 })
    };
    let mut x = vec![0f32; 7 * 4];
    solve_users(&mut x, &y, &prepared, &p, &mut Vec::new()).unwrap();
    assert!(x.iter().all(|v| v.is_finite()));
}

#[test]
fn fold_in_reproduces_the_users_own_exact_solution() {
    let m = small_matrix();
    let p = WmfParams {
        iterations: 3,
        ..params(Solver::Cholesky)
    };
    let t = Threads::new(1).unwrap();
    let (model, _) = fit(&p, m.view(), None, &t, &mut ignore_progress).unwrap();
    let exact = half_step(&m, &model.item_factors, &p, vec![0.0; 28]);
    let rows = Csr::from_triplets(1, 9, &[(0, 0, 3.0), (0, 2, 1.0), (0, 7, 12.0)]).unwrap();
    let folded = fold_in(&p, &model.item_factors, rows.view(), &t).unwrap();
    assert!(max_abs_diff(&folded, &exact[..4]) < 1e-5);
    let wrong = Csr::from_triplets(1, 5, &[]).unwrap();
    assert!(fold_in(&p, &model.item_factors, wrong.view(), &t).is_err());
}

#[test]
fn save_and_load_round_trip() {
    let m = small_matrix();
    let p = WmfParams {
        iterations: 2,
        ..params(Solver::Cg { steps: 3 })
    };
    let (model, _) = fit(&p, m.view(), None, &Threads::new(1).unwrap(), &mut ignore_progress).unwrap();
    let dir = std::env::temp_dir().join(format!("musrec-wmf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    save(&model, &path).unwrap();
    assert_eq!(load(&path).unwrap(), model);
    std::fs::write(&path, b"not a model").unwrap();
    assert!(matches!(load(&path), Err(Error::Format { .. })));
    assert!(matches!(load(&dir.join("missing")), Err(Error::NotFound(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn blocks_cover_rows_and_bound_work() {
    let mut t = Vec::new();
    for u in 0..300u32 {
        let len = if u == 10 { 3000 } else { 5 };
        for i in 0..len {
            t.push((u, i, 1.0));
        }
    }
    let m = Csr::from_triplets(300, 3000, &t).unwrap();
    let b = sweep::blocks(m.view());
    assert_eq!(b.first().unwrap().start, 0);
    assert_eq!(b.last().unwrap().end, 300);
    assert!(b.windows(2).all(|w| w[0].end == w[1].start));
    assert!(
        b.iter().any(|r| r.clone().eq(10..11)),
        "the long row is a block of its own"
    );
    assert!(b.iter().all(|r| r.len() <= 64));
}
