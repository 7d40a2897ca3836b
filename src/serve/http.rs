//! The edge service: the HTTP router over the serving core (axum on tokio). The router owns
//! HTTP; the catalogue knows nothing of it. Every response is JSON and names the model
//! version (in the body and in `x-model-version`); bad input gets a 4xx JSON error naming the
//! problem. Write and admin endpoints need `Authorization: Bearer <token>`, compared in
//! constant time; without a configured token they are refused.
//!
//! Events are appended to the durable log and acknowledged after the append; the users'
//! vectors are folded in at once. On start (and after a hot swap) the log's events after the
//! bundle's offset for this edge are folded in again, so a restart loses no acknowledged play.

use super::bundle::Manifest;
use super::catalogue::{AudioInput, Catalogue, MAX_N, Ranked};
use super::events::{self, Durability, Event, EventLog};
use crate::error::{Error, Result};
use crate::nn::SongMetadata;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// How to run the service.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub host: String,
    /// 0 picks a free port (see [`ServerHandle::addr`]).
    pub port: u16,
    pub events_dir: Option<PathBuf>,
    pub edge_id: String,
    pub durability: Durability,
    pub segment_bytes: u64,
    pub token: Option<String>,
    /// Largest accepted upload (the whole multipart body) in bytes.
    pub max_upload_bytes: usize,
    /// Threads of the runtime that answers requests.
    pub workers: usize,
    /// The pool that rankings and fold-ins run on: 0 is rayon's global pool (one thread per
    /// core, shared by all requests); n > 0 a pool of n threads. (A pool of 1 would put every
    /// request in one queue: bench_edge.py --http measured ~930 requests/s at the paper's size with
    /// it, ~1,500 with the global pool.)
    pub compute_threads: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            events_dir: None,
            edge_id: "edge".into(),
            durability: Durability::Buffered,
            segment_bytes: events::DEFAULT_SEGMENT_BYTES,
            token: None,
            max_upload_bytes: 32 << 20,
            workers: 2,
            compute_threads: 0,
        }
    }
}

/// The model being served: the catalogue and the manifest it came from.
struct Served {
    catalogue: RwLock<Catalogue>,
    manifest: Manifest,
}

/// Latency histogram of one endpoint, Prometheus style (cumulative buckets in seconds).
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];
const ENDPOINTS: [&str; 10] = [
    "recommendations",
    "similar",
    "audience",
    "add_song",
    "events",
    "reload",
    "healthz",
    "readyz",
    "metrics",
    "openapi",
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    errors: AtomicU64,
}

struct AppState {
    current: RwLock<Arc<Served>>,
    log: Option<EventLog>,
    token_digest: Option<[u8; 32]>,
    metrics: Vec<Histogram>,
    upload_dir: PathBuf,
    uploads: AtomicU64,
    compute_threads: usize,
}

type Shared = Arc<AppState>;

impl AppState {
    fn served(&self) -> Arc<Served> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn observe(&self, endpoint: usize, start: Instant, ok: bool) {
        let h = &self.metrics[endpoint];
        let secs = start.elapsed().as_secs_f64();
        for (i, &edge) in BUCKETS.iter().enumerate() {
            if secs <= edge {
                h.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_micros.fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
        if !ok {
            h.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A 4xx (or, for a bug, 5xx) answer with a JSON body naming the problem.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let status = match &err {
            Error::UnknownId(_) => StatusCode::NOT_FOUND,
            Error::InvalidInput(_) | Error::Format { .. } | Error::NotFound(_) | Error::NotFitted(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Error::Io { .. } | Error::Interrupted | Error::Compute(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.message, "status": self.status.as_u16()});
        (self.status, axum::Json(body)).into_response()
    }
}

type ApiResult = std::result::Result<Response, ApiError>;

/// A JSON body with the model version in the body and the header.
fn reply(status: StatusCode, version: &str, mut body: Value) -> Response {
    if let Some(map) = body.as_object_mut() {
        map.insert("model_version".into(), Value::from(version));
    }
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(version) {
        response.headers_mut().insert("x-model-version", value);
    }
    response
}

/// Run blocking work (rankings, fold-ins, decoding) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::result::Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request's work failed: {e}"),
        )),
    }
}

fn read_catalogue(served: &Served) -> Result<std::sync::RwLockReadGuard<'_, Catalogue>> {
    served
        .catalogue
        .read()
        .map_err(|_| Error::invalid("the catalogue is poisoned"))
}

fn write_catalogue(served: &Served) -> Result<std::sync::RwLockWriteGuard<'_, Catalogue>> {
    served
        .catalogue
        .write()
        .map_err(|_| Error::invalid("the catalogue is poisoned"))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Whether the request carries the configured bearer token. The digests of the two tokens
/// are compared with every byte examined, so the time taken says nothing about the token.
fn authorize(state: &AppState, headers: &HeaderMap) -> std::result::Result<(), ApiError> {
    let Some(expected) = &state.token_digest else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this edge has no token configured (--token-file), so write endpoints are closed",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer ...)",
            )
        })?;
    let digest = sha256(given.as_bytes());
    let diff = digest.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong bearer token"));
    }
    Ok(())
}

fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> std::result::Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::new(e.status(), format!("bad query string: {}", e.body_text())))
}

fn check_n(n: Option<usize>, default: usize) -> std::result::Result<usize, ApiError> {
    let n = n.unwrap_or(default);
    if !(1..=MAX_N).contains(&n) {
        return Err(ApiError::bad(format!("n must be between 1 and {MAX_N}, got {n}")));
    }
    Ok(n)
}

fn items(ranked: Ranked, key: &str) -> Value {
    Value::Array(
        ranked
            .into_iter()
            .map(|(id, score)| json!({key: id, "score": score}))
            .collect(),
    )
}

/// Time a handler and count its errors under `endpoint`.
async fn timed(state: &AppState, endpoint: usize, work: impl Future<Output = ApiResult>) -> Response {
    let start = Instant::now();
    let result = work.await;
    state.observe(endpoint, start, result.is_ok());
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct RecommendQuery {
    n: Option<usize>,
    exclude_played: Option<bool>,
    only_new: Option<bool>,
}

async fn recommendations(
    State(state): State<Shared>,
    UrlPath(user_id): UrlPath<String>,
    q: std::result::Result<Query<RecommendQuery>, QueryRejection>,
) -> Response {
    timed(&state, 0, async {
        let q = query(q)?;
        let n = check_n(q.n, 10)?;
        let (exclude, only_new) = (q.exclude_played.unwrap_or(true), q.only_new.unwrap_or(false));
        let served = state.served();
        let s = served.clone();
        let user = user_id.clone();
        let ranked = blocking(move || read_catalogue(&s)?.recommend(&user, n, exclude, only_new)).await?;
        let body = json!({"user_id": user_id, "items": items(ranked, "song_id")});
        Ok(reply(StatusCode::OK, &served.manifest.model_version, body))
    })
    .await
}

#[derive(Deserialize)]
struct NQuery {
    n: Option<usize>,
}

/// A ranking about one catalogue song: its similar songs or its audience.
async fn song_ranking(
    state: Shared,
    endpoint: usize,
    song_id: String,
    q: std::result::Result<Query<NQuery>, QueryRejection>,
    (default_n, key): (usize, &'static str),
    rank: fn(&Catalogue, &str, usize) -> Result<Ranked>,
) -> Response {
    timed(&state, endpoint, async {
        let n = check_n(query(q)?.n, default_n)?;
        let served = state.served();
        let (s, song) = (served.clone(), song_id.clone());
        let ranked = blocking(move || rank(&*read_catalogue(&s)?, &song, n)).await?;
        let body = json!({"song_id": song_id, "items": items(ranked, key)});
        Ok(reply(StatusCode::OK, &served.manifest.model_version, body))
    })
    .await
}

async fn similar(
    State(state): State<Shared>,
    UrlPath(song_id): UrlPath<String>,
    q: std::result::Result<Query<NQuery>, QueryRejection>,
) -> Response {
    song_ranking(state, 1, song_id, q, (10, "song_id"), Catalogue::similar).await
}

async fn audience(
    State(state): State<Shared>,
    UrlPath(song_id): UrlPath<String>,
    q: std::result::Result<Query<NQuery>, QueryRejection>,
) -> Response {
    song_ranking(state, 2, song_id, q, (100, "user_id"), Catalogue::audience).await
}

/// The JSON part of a song upload.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SongFields {
    song_id: Option<String>,
    #[serde(default)]
    tags: Tags,
    artist: Option<String>,
    year: Option<i32>,
}

/// Tags as a list of names (weight 1 each) or an object of name -> weight.
#[derive(Deserialize)]
#[serde(untagged)]
enum Tags {
    List(Vec<String>),
    Weighted(BTreeMap<String, f32>),
}

impl Default for Tags {
    fn default() -> Self {
        Tags::List(Vec::new())
    }
}

impl Tags {
    fn pairs(self) -> std::result::Result<Vec<(String, f32)>, ApiError> {
        let pairs: Vec<(String, f32)> = match self {
            Tags::List(names) => names.into_iter().map(|t| (t, 1.0)).collect(),
            Tags::Weighted(map) => map.into_iter().collect(),
        };
        if let Some((tag, w)) = pairs.iter().find(|(_, w)| !w.is_finite() || *w < 0.0) {
            return Err(ApiError::bad(format!(
                "tag {tag:?} has weight {w}; weights must be finite and >= 0"
            )));
        }
        Ok(pairs)
    }
}

/// A file name's extension when it is a plain short one (a decoding hint), else "bin".
fn extension(name: Option<&str>) -> String {
    name.and_then(|n| Path::new(n).extension())
        .and_then(|e| e.to_str())
        .filter(|e| !e.is_empty() && e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .map_or_else(|| "bin".to_string(), str::to_ascii_lowercase)
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "the upload is over this edge's size limit".to_string()
    } else {
        format!("bad multipart body: {}", e.body_text())
    };
    ApiError::new(status, message)
}

async fn add_song(
    State(state): State<Shared>,
    headers: HeaderMap,
    multipart: std::result::Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    timed(&state, 3, async {
        authorize(&state, &headers)?;
        let mut multipart = multipart.map_err(|e| {
            ApiError::new(
                e.status(),
                format!("expected a multipart/form-data body: {}", e.body_text()),
            )
        })?;
        let mut audio: Option<(Bytes, String)> = None;
        let mut fields: Option<SongFields> = None;
        while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
            match field.name() {
                Some("audio") => {
                    let ext = extension(field.file_name());
                    audio = Some((field.bytes().await.map_err(multipart_error)?, ext));
                }
                Some("metadata") => {
                    let bytes = field.bytes().await.map_err(multipart_error)?;
                    let parsed = serde_json::from_slice(&bytes)
                        .map_err(|e| ApiError::bad(format!("the metadata part is not valid song JSON: {e}")))?;
                    fields = Some(parsed);
                }
                other => {
                    return Err(ApiError::bad(format!(
                        "unexpected part {other:?}; send 'audio' (the file) and 'metadata' (JSON)"
                    )));
                }
            }
        }
        let fields = fields.unwrap_or_default();
        let served = state.served();
        let song_id = match fields.song_id {
            Some(id) => id,
            None => match &audio {
                Some((bytes, _)) => format!("sha256:{}", &super::bundle::sha256_hex(bytes)[..16]),
                None => return Err(ApiError::bad("give a song_id or the audio to name the song by")),
            },
        };
        if read_catalogue(&served)?.song(&song_id).is_ok() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("song {song_id:?} is already in the catalogue"),
            ));
        }
        let metadata = SongMetadata {
            tags: fields.tags.pairs()?,
            artist: fields.artist,
            year: fields.year,
        };
        let upload = audio.map(|(bytes, ext)| {
            let n = state.uploads.fetch_add(1, Ordering::Relaxed);
            (state.upload_dir.join(format!("upload-{n}.{ext}")), bytes, ext)
        });
        let (s, st) = (served.clone(), state.clone());
        let id = song_id.clone();
        blocking(move || {
            let input = match &upload {
                Some((path, bytes, _)) => {
                    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))?;
                    Some(AudioInput::File(path.clone()))
                }
                None => None,
            };
            let vector = read_catalogue(&s)?.song_vector(input.as_ref(), &metadata);
            let kept = match (&vector, &st.log, &upload) {
                // With a log, the song is durable: its audio kept, its record appended (and
                // acknowledged as events are) before the catalogue has it.
                (Ok(vector), Some(log), _) => {
                    let audio = match &upload {
                        Some((_, bytes, ext)) => Some(log.keep_audio(bytes, ext)?),
                        None => None,
                    };
                    log.append_song(&events::SongAdded {
                        song_id: id.clone(),
                        tags: metadata.tags.clone(),
                        artist: metadata.artist.clone(),
                        year: metadata.year,
                        audio,
                        model_version: s.manifest.model_version.clone(),
                        vector: vector.clone(),
                        timestamp: now_seconds(),
                    })
                    .map(|_| ())
                }
                _ => Ok(()),
            };
            if let Some((path, _, _)) = &upload {
                let _ = std::fs::remove_file(path);
            }
            kept?;
            write_catalogue(&s)?.add_song(&id, &vector?)
        })
        .await
        .map_err(|e| {
            if e.message.contains("already in the catalogue") {
                ApiError::new(StatusCode::CONFLICT, e.message)
            } else if e.status == StatusCode::BAD_REQUEST && e.message.contains("cannot use the audio") {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.message)
            } else {
                e
            }
        })?;
        let body = json!({"song_id": song_id, "new": true});
        Ok(reply(StatusCode::CREATED, &served.manifest.model_version, body))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    user_id: String,
    song_id: String,
    plays: f32,
    timestamp: f64,
}

/// Fold events into the catalogue, one fold-in per user. `skip_unknown` drops events whose
/// song the catalogue lacks (a replay after a swap) instead of failing; returns how many.
fn fold_events(catalogue: &mut Catalogue, events: &[Event], skip_unknown: bool) -> Result<usize> {
    let mut per_user: BTreeMap<&str, Vec<(String, f32)>> = BTreeMap::new();
    let mut skipped = 0;
    for e in events {
        if skip_unknown && catalogue.song(&e.song_id).is_err() {
            skipped += 1;
            continue;
        }
        per_user
            .entry(&e.user_id)
            .or_default()
            .push((e.song_id.clone(), e.plays));
    }
    for (user, plays) in per_user {
        catalogue.record_plays(user, &plays)?;
    }
    Ok(skipped)
}

async fn post_events(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: std::result::Result<axum::Json<Vec<EventIn>>, JsonRejection>,
) -> Response {
    timed(&state, 4, async {
        authorize(&state, &headers)?;
        let axum::Json(batch) = body.map_err(|e| {
            ApiError::new(
                e.status(),
                format!(
                    "expected a JSON list of {{user_id, song_id, plays, timestamp}}: {}",
                    e.body_text()
                ),
            )
        })?;
        if batch.is_empty() {
            return Err(ApiError::bad("the list of events is empty"));
        }
        if state.log.is_none() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this edge has no event log (start it with --events DIR)",
            ));
        }
        let events: Vec<Event> = batch
            .into_iter()
            .map(|e| Event {
                user_id: e.user_id,
                song_id: e.song_id,
                plays: e.plays,
                timestamp: e.timestamp,
            })
            .collect();
        let served = state.served();
        {
            let c = read_catalogue(&served)?;
            for (i, e) in events.iter().enumerate() {
                e.validate().map_err(|err| ApiError::bad(format!("event {i}: {err}")))?;
                c.song(&e.song_id)
                    .map_err(|err| ApiError::new(StatusCode::NOT_FOUND, format!("event {i}: {err}")))?;
            }
        }
        let n = events.len();
        let (st, s) = (state.clone(), served.clone());
        let (first, last) = blocking(move || {
            let log = st.log.as_ref().ok_or_else(|| Error::invalid("no event log"))?;
            let offsets = log.append_events(&events)?;
            // Validated above; a reload in between may have dropped a song, and the events are
            // logged by now, so such an event is skipped rather than failing the request.
            fold_events(&mut *write_catalogue(&s)?, &events, true)?;
            Ok(offsets)
        })
        .await?;
        let body = json!({"accepted": n, "first_offset": first, "last_offset": last});
        Ok(reply(StatusCode::OK, &served.manifest.model_version, body))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadIn {
    path: PathBuf,
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What loading a bundle took back from this edge's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// Listening events after the bundle's offset, folded in.
    pub events: usize,
    /// Songs the edge had added that the bundle lacks, added again with their logged vector
    /// (same model version) ...
    pub songs: usize,
    /// ... or embedded again from their kept audio and metadata (another model version).
    pub reembedded: usize,
    /// Songs that could not be added back (the bundle has no content model, or the kept
    /// audio is gone or no longer decodes); their events are then skipped as unknown.
    pub lost_songs: usize,
}

/// Add back a song the edge's log recorded.
fn restore_song(catalogue: &mut Catalogue, log: &EventLog, song: &events::SongAdded, replay: &mut Replay) {
    let same_model = song.model_version == catalogue.model_version();
    let vector = if same_model {
        Ok(song.vector.clone())
    } else {
        let audio = song
            .audio
            .as_ref()
            .map(|name| AudioInput::File(log.dir().join(events::SONGS_DIR).join(name)));
        let metadata = SongMetadata {
            tags: song.tags.clone(),
            artist: song.artist.clone(),
            year: song.year,
        };
        catalogue.song_vector(audio.as_ref(), &metadata)
    };
    match vector.and_then(|v| catalogue.add_song(&song.song_id, &v)) {
        Ok(()) if same_model => replay.songs += 1,
        Ok(()) => replay.reembedded += 1,
        Err(_) => replay.lost_songs += 1,
    }
}

/// Open a bundle, add back the songs this edge added that the bundle lacks (from the whole
/// log: a new bundle from the cloud does not carry them), and fold in this edge's listening
/// events after the bundle's offset.
fn load_served(path: &Path, log: Option<&EventLog>, compute_threads: usize) -> Result<(Served, Replay)> {
    let (mut catalogue, manifest) = Catalogue::open(path, compute_threads)?;
    let mut replay = Replay::default();
    if let Some(log) = log {
        let after = manifest.edge_offsets.get(log.edge_id()).copied().unwrap_or(0);
        let mut plays = Vec::new();
        for record in events::read(log.dir(), 0, None)? {
            if record.edge_id != log.edge_id() {
                continue;
            }
            match record.entry()? {
                events::Entry::Song { song_added } => {
                    if catalogue.song(&song_added.song_id).is_err() {
                        restore_song(&mut catalogue, log, &song_added, &mut replay);
                    }
                }
                events::Entry::Play(event) if record.seq > after => plays.push(event),
                events::Entry::Play(_) => {}
            }
        }
        fold_events(&mut catalogue, &plays, true)?;
        replay.events = plays.len();
    }
    Ok((
        Served {
            catalogue: RwLock::new(catalogue),
            manifest,
        },
        replay,
    ))
}

async fn reload(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: std::result::Result<axum::Json<ReloadIn>, JsonRejection>,
) -> Response {
    timed(&state, 5, async {
        authorize(&state, &headers)?;
        let axum::Json(req) = body.map_err(|e| {
            ApiError::new(
                e.status(),
                format!("expected JSON {{\"path\": BUNDLE_DIR}}: {}", e.body_text()),
            )
        })?;
        let previous = state.served().manifest.model_version.clone();
        let st = state.clone();
        let (served, replay) = blocking(move || load_served(&req.path, st.log.as_ref(), st.compute_threads)).await?;
        let version = served.manifest.model_version.clone();
        // In-flight requests finish on the model they started with; new ones see this one.
        match state.current.write() {
            Ok(mut guard) => *guard = Arc::new(served),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(served),
        }
        let body = json!({
            "previous_model_version": previous,
            "replayed_events": replay.events,
            "restored_songs": replay.songs,
            "reembedded_songs": replay.reembedded,
            "lost_songs": replay.lost_songs,
        });
        Ok(reply(StatusCode::OK, &version, body))
    })
    .await
}

async fn healthz(State(state): State<Shared>) -> Response {
    timed(&state, 6, async {
        let served = state.served();
        Ok(reply(
            StatusCode::OK,
            &served.manifest.model_version,
            json!({"status": "ok"}),
        ))
    })
    .await
}

async fn readyz(State(state): State<Shared>) -> Response {
    timed(&state, 7, async {
        let served = state.served();
        let c = read_catalogue(&served)?;
        let body = json!({
            "status": "ready",
            "users": c.n_users(),
            "songs": c.n_songs(),
            "new_songs": c.n_songs() - c.n_known(),
            "event_log": state.log.as_ref().map(|l| json!({"edge_id": l.edge_id(), "last_offset": l.last_seq()})),
        });
        Ok(reply(StatusCode::OK, &served.manifest.model_version, body))
    })
    .await
}

async fn metrics(State(state): State<Shared>) -> Response {
    let start = Instant::now();
    let mut out = String::new();
    out.push_str("# HELP musrec_request_duration_seconds Request latency per endpoint.\n");
    out.push_str("# TYPE musrec_request_duration_seconds histogram\n");
    for (name, h) in ENDPOINTS.iter().zip(&state.metrics) {
        for (edge, count) in BUCKETS.iter().zip(&h.buckets) {
            out.push_str(&format!(
                "musrec_request_duration_seconds_bucket{{endpoint=\"{name}\",le=\"{edge}\"}} {}\n",
                count.load(Ordering::Relaxed)
            ));
        }
        let count = h.count.load(Ordering::Relaxed);
        out.push_str(&format!(
            "musrec_request_duration_seconds_bucket{{endpoint=\"{name}\",le=\"+Inf\"}} {count}\n"
        ));
        out.push_str(&format!(
            "musrec_request_duration_seconds_sum{{endpoint=\"{name}\"}} {}\n",
            h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        ));
        out.push_str(&format!(
            "musrec_request_duration_seconds_count{{endpoint=\"{name}\"}} {count}\n"
        ));
    }
    out.push_str("# HELP musrec_request_errors_total Requests answered with an error, per endpoint.\n");
    out.push_str("# TYPE musrec_request_errors_total counter\n");
    for (name, h) in ENDPOINTS.iter().zip(&state.metrics) {
        out.push_str(&format!(
            "musrec_request_errors_total{{endpoint=\"{name}\"}} {}\n",
            h.errors.load(Ordering::Relaxed)
        ));
    }
    let served = state.served();
    out.push_str(&format!(
        "# TYPE musrec_model_info gauge\nmusrec_model_info{{model_version=\"{}\"}} 1\n",
        served.manifest.model_version
    ));
    state.observe(8, start, true);
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    if let Ok(value) = HeaderValue::from_str(&served.manifest.model_version) {
        response.headers_mut().insert("x-model-version", value);
    }
    response
}

/// The API description (OpenAPI 3.0).
fn openapi_document() -> Value {
    let n = |default: usize| json!({"name": "n", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_N, "default": default}});
    let path_param = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
    let ranked = json!({"description": "a ranking, best first", "content": {"application/json": {}}});
    let error = json!({"description": "JSON {error, status}"});
    let bearer = json!([{"bearer": []}]);
    json!({
        "openapi": "3.0.3",
        "info": {"title": "musrec edge service", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/users/{user_id}/recommendations": {"get": {
                "summary": "Top-N songs, known and new, for a user",
                "parameters": [path_param("user_id"), n(10),
                    {"name": "exclude_played", "in": "query", "schema": {"type": "boolean", "default": true}},
                    {"name": "only_new", "in": "query", "schema": {"type": "boolean", "default": false}}],
                "responses": {"200": ranked, "400": error, "404": error}}},
            "/v1/songs/{song_id}/similar": {"get": {
                "summary": "Nearest songs by cosine", "parameters": [path_param("song_id"), n(10)],
                "responses": {"200": ranked, "400": error, "404": error}}},
            "/v1/songs/{song_id}/audience": {"get": {
                "summary": "The users to push a song to", "parameters": [path_param("song_id"), n(100)],
                "responses": {"200": ranked, "400": error, "404": error}}},
            "/v1/songs": {"post": {
                "summary": "Add a new song from its audio and metadata", "security": bearer,
                "requestBody": {"content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
                    "audio": {"type": "string", "format": "binary"},
                    "metadata": {"type": "string", "description": "JSON {song_id?, tags, artist, year}"}}}}}},
                "responses": {"201": {"description": "added"}, "400": error, "401": error, "409": error, "413": error, "422": error}}},
            "/v1/events": {"post": {
                "summary": "Append listening events durably and fold the users in", "security": bearer,
                "requestBody": {"content": {"application/json": {"schema": {"type": "array", "items": {"type": "object",
                    "required": ["user_id", "song_id", "plays", "timestamp"],
                    "properties": {"user_id": {"type": "string"}, "song_id": {"type": "string"},
                        "plays": {"type": "number"}, "timestamp": {"type": "number"}}}}}}},
                "responses": {"200": {"description": "appended: {accepted, first_offset, last_offset}"},
                    "400": error, "401": error, "404": error, "503": error}}},
            "/admin/reload": {"post": {
                "summary": "Swap in another bundle atomically", "security": bearer,
                "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {"path": {"type": "string"}}}}}},
                "responses": {"200": {"description": "swapped"}, "400": error, "401": error}}},
            "/healthz": {"get": {"summary": "liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "readiness", "responses": {"200": {"description": "ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI"}}}}
        }
    })
}

async fn openapi(State(state): State<Shared>) -> Response {
    timed(&state, 9, async {
        let served = state.served();
        Ok(reply(
            StatusCode::OK,
            &served.manifest.model_version,
            openapi_document(),
        ))
    })
    .await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint (see /openapi.json)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
}

fn router(state: Shared, max_upload_bytes: usize) -> Router {
    Router::new()
        .route("/v1/users/{user_id}/recommendations", get(recommendations))
        .route("/v1/songs/{song_id}/similar", get(similar))
        .route("/v1/songs/{song_id}/audience", get(audience))
        .route(
            "/v1/songs",
            post(add_song).layer(DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route("/v1/events", post(post_events))
        .route("/admin/reload", post(reload))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// A running service: its address, and a way to stop it.
pub struct ServerHandle {
    addr: SocketAddr,
    model_version: String,
    replay: Replay,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    upload_dir: PathBuf,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn model_version(&self) -> &str {
        &self.model_version
    }
    /// Events folded in from the log at start.
    pub fn replayed_events(&self) -> usize {
        self.replay.events
    }
    /// Everything loading took back from the log at start.
    pub fn replay(&self) -> Replay {
        self.replay
    }
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stop accepting, let in-flight requests finish, and wait for the server to end.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(result) => result.map_err(|e| Error::Io {
                    path: PathBuf::from("<server>"),
                    source: e,
                })?,
                Err(_) => return Err(Error::Compute("the server thread panicked".into())),
            }
        }
        let _ = std::fs::remove_dir_all(&self.upload_dir);
        Ok(())
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Remove the upload directories (`musrec-uploads-PID-PORT`) that services killed before
/// they could clean up left in `tmp`: those whose process no longer runs. Only where a
/// process's liveness can be read (`/proc`); elsewhere nothing is removed.
fn remove_stale_upload_dirs(tmp: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("musrec-uploads-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Load the bundle, open the event log (repairing a torn tail, folding in the events after
/// the bundle's offset), bind, and serve on background threads until stopped.
pub fn start(bundle: &Path, config: &ServeConfig) -> Result<ServerHandle> {
    let log = match &config.events_dir {
        Some(dir) => Some(EventLog::open(dir, &config.edge_id, config.durability, config.segment_bytes)?.0),
        None => None,
    };
    if let Some(token) = &config.token {
        crate::ensure!(!token.is_empty(), "the token is empty");
    }
    let (served, replay) = load_served(bundle, log.as_ref(), config.compute_threads)?;
    let model_version = served.manifest.model_version.clone();
    let listener = std::net::TcpListener::bind((config.host.as_str(), config.port))
        .map_err(|e| Error::invalid(format!("cannot listen on {}:{}: {e}", config.host, config.port)))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::invalid(format!("cannot configure the socket: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::invalid(format!("cannot read the bound address: {e}")))?;
    // Named by the bound port, so two services of one process (port 0) never share it.
    remove_stale_upload_dirs(&std::env::temp_dir());
    let upload_dir = std::env::temp_dir().join(format!("musrec-uploads-{}-{}", std::process::id(), addr.port()));
    std::fs::create_dir_all(&upload_dir).map_err(|e| Error::io(&upload_dir, e))?;
    let state = Arc::new(AppState {
        current: RwLock::new(Arc::new(served)),
        log,
        token_digest: config.token.as_deref().map(|t| sha256(t.as_bytes())),
        metrics: ENDPOINTS.iter().map(|_| Histogram::default()).collect(),
        upload_dir: upload_dir.clone(),
        uploads: AtomicU64::new(0),
        compute_threads: config.compute_threads,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers.max(1))
        .max_blocking_threads(64)
        .enable_io()
        .enable_time()
        .thread_name("musrec-edge")
        .build()
        .map_err(|e| Error::invalid(format!("cannot start the server runtime: {e}")))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(state, config.max_upload_bytes);
    let thread = std::thread::Builder::new()
        .name("musrec-edge-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
            })
        })
        .map_err(|e| Error::invalid(format!("cannot start the server thread: {e}")))?;
    Ok(ServerHandle {
        addr,
        model_version,
        replay,
        stop: Some(stop),
        thread: Some(thread),
        upload_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::bundle::SongEncoding;
    use crate::serve::bundle::tests::{scratch, tiny_bundle};
    use std::io::{Read, Write};

    /// A killed service's upload directory goes at the next start; a live process's stays.
    #[test]
    fn stale_upload_dirs_of_dead_processes_are_removed() {
        let tmp = scratch("stale-uploads");
        // Above Linux's largest pid (2^22): no such process.
        let dead = tmp.join("musrec-uploads-4194999-8080");
        let live = tmp.join(format!("musrec-uploads-{}-8081", std::process::id()));
        let other = tmp.join("musrec-uploads-notapid-1");
        for dir in [&dead, &live, &other] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("upload-0.wav"), b"x").unwrap();
        }
        remove_stale_upload_dirs(&tmp);
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
    }

    /// One request over loopback (HTTP/1.1, closed after the answer): (status, body).
    fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> (u16, Value) {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer[9..12].parse().unwrap();
        let json = answer.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(json).unwrap_or(Value::Null))
    }

    #[test]
    fn serves_rankings_events_and_json_errors() {
        let root = scratch("http");
        let bundle = root.join("bundle");
        tiny_bundle().write(&bundle, SongEncoding::F32).unwrap();
        let config = ServeConfig {
            port: 0,
            events_dir: Some(root.join("events")),
            token: Some("t0ken".into()),
            ..ServeConfig::default()
        };
        let mut server = start(&bundle, &config).unwrap();
        let addr = server.addr();
        let version = server.model_version().to_string();

        let (status, body) = request(addr, "GET", "/v1/users/user3/recommendations?n=4", "", "");
        assert_eq!(status, 200);
        assert_eq!(body["model_version"], Value::from(version.as_str()));
        assert_eq!(body["items"].as_array().unwrap().len(), 4);
        assert_eq!(request(addr, "GET", "/v1/users/nobody/recommendations", "", "").0, 404);
        let (status, body) = request(addr, "GET", "/v1/songs/song1/similar?n=0", "", "");
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("n must be"), "{body}");
        assert_eq!(request(addr, "GET", "/nowhere", "", "").0, 404);

        let events = r#"[{"user_id": "fresh", "song_id": "song2", "plays": 3, "timestamp": 1.5}]"#;
        let json = "Content-Type: application/json\r\n";
        assert_eq!(request(addr, "POST", "/v1/events", json, events).0, 401);
        let auth = "Content-Type: application/json\r\nAuthorization: Bearer t0ken\r\n";
        let (status, body) = request(addr, "POST", "/v1/events", auth, events);
        assert_eq!((status, body["first_offset"].as_u64()), (200, Some(1)), "{body}");
        assert_eq!(request(addr, "GET", "/v1/users/fresh/recommendations", "", "").0, 200);
        assert_eq!(request(addr, "POST", "/v1/events", auth, "[{").0, 400);
        server.stop().unwrap();

        // A restart folds the logged event in again: the user is still there.
        let mut again = start(&bundle, &config).unwrap();
        assert_eq!(again.replayed_events(), 1);
        assert_eq!(
            request(again.addr(), "GET", "/v1/users/fresh/recommendations", "", "").0,
            200
        );
        again.stop().unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
}
