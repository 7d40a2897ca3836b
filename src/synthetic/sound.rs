//! The sound of a synthetic song: a melody of harmonic notes over an optional drone and drum
//! hits, every audible quality set by one of twelve parameters in (0, 1) that the world
//! derives from the song's latent style (plus noise), so that audio predicts style — partly.
//!
//! Harmonics come from a rotation recurrence (one sin/cos per sample, then two multiply-adds
//! per harmonic), so a 4-second clip renders in milliseconds.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::f64::consts::TAU;

/// The audible qualities, each in (0, 1).
pub const N_SOUND_PARAMS: usize = 12;
pub const SOUND_PARAM_NAMES: [&str; N_SOUND_PARAMS] = [
    "pitch",      // fundamental of the melody's centre, 80-900 Hz (log scale)
    "range",      // melodic range, 1-12 semitones
    "brightness", // spectral tilt: how slowly harmonics fall off
    "hollowness", // weakness of the even harmonics (clarinet-like when high)
    "tempo",      // 60-180 beats per minute
    "sustain",    // note decay: plucked when low, held when high
    "noise",      // level of the broadband noise floor
    "percussion", // probability of a drum hit per beat
    "vibrato",    // depth of a 5.5 Hz pitch vibrato
    "drift",      // change over time: pitch and brightness glide across the clip
    "bass",       // level of a drone an octave below the melody
    "density",    // notes per beat: 1 when low, 2 when high
];

const MAX_HARMONICS: usize = 16;
/// Samples between updates of pitch, envelope and drone level (1.5 ms at 22,050 Hz).
const CONTROL_PERIOD: usize = 32;
/// Samples between updates of the spectral tilt (a multiple of CONTROL_PERIOD).
const TILT_PERIOD: usize = 1024;

/// Render `seconds` of the song with `params` at `sample_rate`; the rng draws the melody,
/// the drum pattern, the noise and the loudness (random per song, so not style).
pub fn render(params: &[f32; N_SOUND_PARAMS], sample_rate: u32, seconds: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let p = |i: usize| f64::from(params[i]);
    let sr = f64::from(sample_rate);
    let n = (seconds * sr).round() as usize;
    let beat = 60.0 / (60.0 + 120.0 * p(4));
    let note_len = if p(11) > 0.5 { beat / 2.0 } else { beat };
    let centre = 80.0 * 2f64.powf(3.5 * p(0));
    let range = 1.0 + 11.0 * p(1);
    let drift = p(9) - 0.5;
    let tau = note_len * (0.15 + 2.0 * p(5));
    let nyquist = 0.45 * sr;

    let mut out = vec![0f32; n];
    let mut phase = 0.0f64;
    let mut bass_phase = 0.0f64;
    let n_notes = (seconds / note_len).ceil() as usize + 1;
    let offsets: Vec<f64> = (0..n_notes)
        .map(|_| (rng.random::<f64>() - 0.5) * range)
        .map(f64::round)
        .collect();
    // Pitch, envelope and drone level change at a control rate, the spectral tilt more
    // slowly still: transcendental functions per sample would dominate the cost.
    let (mut f0, mut level, mut bass_level) = (centre, 0.0, 0.0);
    let mut weights = [0f64; MAX_HARMONICS];
    let mut n_harmonics = 0;
    for (i, sample) in out.iter_mut().enumerate() {
        if i % CONTROL_PERIOD == 0 {
            let t = i as f64 / sr;
            let progress = t / seconds.max(1e-9);
            let note = ((t / note_len) as usize).min(n_notes - 1);
            let since = t - note as f64 * note_len;
            let semitones = offsets[note] + 12.0 * drift * progress + 0.5 * p(8) * (TAU * 5.5 * t).sin();
            f0 = (centre * 2f64.powf(semitones / 12.0)).min(nyquist);
            level = 0.5 * (since / 0.005).min(1.0) * (-since / tau).exp();
            bass_level = 0.6 * p(10) * (0.6 + 0.4 * (-((t % beat) / beat) * 3.0).exp());
            n_harmonics = ((nyquist / f0).ceil() as usize - 1).clamp(1, MAX_HARMONICS);
            if i % TILT_PERIOD == 0 {
                let brightness = (p(2) + 0.8 * drift * (progress - 0.5)).clamp(0.0, 1.0);
                let tilt = 0.6 + 2.4 * (1.0 - brightness);
                for (h, w) in weights.iter_mut().enumerate() {
                    let even = if h % 2 == 1 { 1.0 - 0.9 * p(3) } else { 1.0 };
                    *w = even * ((h + 1) as f64).powf(-tilt);
                }
            }
        }
        phase = (phase + TAU * f0 / sr) % TAU;
        let (s1, c1) = phase.sin_cos();
        let (mut s, mut c) = (s1, c1);
        let mut tone = 0.0;
        for &w in &weights[..n_harmonics] {
            tone += w * s;
            (s, c) = (s * c1 + c * s1, c * c1 - s * s1);
        }
        bass_phase = (bass_phase + TAU * centre / 2.0 / sr) % TAU;
        *sample = (level * tone + bass_level * bass_phase.sin()) as f32;
    }
    // Drum hits: short decaying noise bursts on beats (and off-beats, more rarely).
    let hit_len = (0.04 * sr) as usize;
    let half_beats = (seconds / (beat / 2.0)).ceil() as usize;
    for k in 0..half_beats {
        let chance = if k % 2 == 0 { p(7) } else { p(7) * p(7) };
        if rng.random::<f64>() >= chance {
            continue;
        }
        let start = (k as f64 * beat / 2.0 * sr) as usize;
        for j in 0..hit_len.min(n.saturating_sub(start)) {
            let decay = (-(j as f64) / (0.25 * hit_len as f64)).exp();
            out[start + j] += (0.8 * decay * (rng.random::<f64>() * 2.0 - 1.0)) as f32;
        }
    }
    let noise = 0.25 * p(6);
    for v in out.iter_mut() {
        *v += (noise * (rng.random::<f64>() * 2.0 - 1.0)) as f32;
    }
    let peak = out.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let loudness = rng.random_range(0.3f32..0.95) / peak;
    for v in out.iter_mut() {
        *v *= loudness;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn spectral_centroid(x: &[f32], sr: f64) -> f64 {
        // Zero-crossing rate is a cheap proxy for where the spectrum's weight lies.
        let crossings = x.windows(2).filter(|w| (w[0] >= 0.0) != (w[1] >= 0.0)).count();
        crossings as f64 * sr / (2.0 * x.len() as f64)
    }

    #[test]
    fn parameters_are_audible() {
        let base = [0.5f32; N_SOUND_PARAMS];
        let quiet = |mut p: [f32; N_SOUND_PARAMS]| {
            p[6] = 0.0; // no noise floor
            p[7] = 0.0; // no drums
            p[10] = 0.0; // no drone
            p
        };
        let render_with = |p: [f32; N_SOUND_PARAMS]| render(&p, 16000, 2.0, &mut ChaCha8Rng::seed_from_u64(1));
        let mut low = quiet(base);
        low[0] = 0.05;
        let mut high = quiet(base);
        high[0] = 0.95;
        let (lo, hi) = (render_with(low), render_with(high));
        assert_eq!(lo.len(), 32000);
        assert!(spectral_centroid(&hi, 16000.0) > 2.0 * spectral_centroid(&lo, 16000.0));
        assert!(lo.iter().chain(&hi).all(|v| v.is_finite() && v.abs() <= 1.0));
        // Same parameters and seed, same clip.
        assert_eq!(render_with(low), lo);
    }
}
