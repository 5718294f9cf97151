//! The validating Docker Engine API proxy (Engine API over HTTP/1.1, RFC 9112).
//!
//! One request's path: listener -> [`route`] (decode, classify) -> for the
//! endpoints it inspects, read the whole JSON body (bounded) and let
//! [`policy`] allow it, returning the canonical body to forward, or refuse it
//! -> forward to the private dockerd socket -> stream the response back, or
//! splice both connections after dockerd's `101` ([`hijack`]).

#![forbid(unsafe_code)]

pub mod check;
mod cli;
pub mod config;
mod daemon_headers;
pub mod gojson;
pub mod gomime;
pub mod gopath;
mod hijack;
mod hostroutes;
mod listen;
mod loadscan;
mod lookups;
mod message;
pub mod policy;
pub mod query;
pub mod route;
mod tags;
pub mod version;

pub use self::cli::{main, policy_main, PolicyArgs, PolicyOptions, ProxyArgs};
pub use self::listen::{BindError, ListenAddr, Listener};

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::engine::{self, Engine};
use crate::metrics;
use crate::serve::{self, Limits};

use self::listen::Io;
use self::message::{
    content_length, empty, error_response, forward_content_type, full, json_response, read_answer,
    read_bounded, stream, strip_hop_by_hop, Body, BODY_LIMIT,
};
use self::policy::{Policy, Reject};
use self::route::Endpoint;
use self::version::{ApiVersion, DaemonApi, Window};

/// The most bytes of inspected bodies held at once, over all requests: a
/// request reserves its Content-Length (the body limit when chunked) before
/// its body is read, and gives it back when the request is done.
const BODY_BUDGET: usize = 64 << 20;
/// dockerd's preferred builder, stated on `/_ping`: `1` (classic) unless
/// BuildKit is allowed.
const BUILDER_VERSION: header::HeaderName = header::HeaderName::from_static("builder-version");
/// How long a request waits for room in [`BODY_BUDGET`] before a 503.
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(3);
/// Bodies at least this large are checked on the blocking pool, not on the
/// I/O workers (smaller ones inline: a thread hop costs more than their check).
const INLINE_CHECK_LIMIT: usize = 64 << 10;

/// What the proxy forwards to, and the policy it applies on the way.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The private dockerd socket.
    pub upstream: PathBuf,
    pub policy: Policy,
}

pub struct Proxy {
    /// The private dockerd: its pool, for the proxy's own requests (owner
    /// checks, tags, its version); forwarded requests go on their client
    /// connection's own [`engine::Connection`].
    engine: Engine,
    policy: Arc<Policy>,
    /// [`BODY_BUDGET`], in KiB permits.
    body_budget: Arc<Semaphore>,
    /// Heavy body checks running at once on the blocking pool: one fewer
    /// than the cores, so the I/O workers always have one.
    heavy_checks: Arc<Semaphore>,
    /// In owner mode, the tags this proxy set from loads, pulls and `docker
    /// tag` (see [`policy::images`]); shared by every connection.
    recorded: Arc<policy::images::Recorded>,
    /// dockerd's own headers, for the answers the proxy gives itself (once
    /// dockerd has answered a request: every client starts with `/_ping` or
    /// `/version`).
    daemon_headers: daemon_headers::DaemonHeaders,
    /// dockerd's newest API version, which bounds the versions served.
    daemon_api: DaemonApi,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Arc<Proxy> {
        let mut policy = config.policy;
        policy.subnets.host_routes = hostroutes::read();
        Arc::new(Proxy {
            engine: Engine::new(&config.upstream),
            policy: Arc::new(policy),
            body_budget: Arc::new(Semaphore::new(BODY_BUDGET >> 10)),
            heavy_checks: Arc::new(Semaphore::new(heavy_check_slots())),
            recorded: Arc::default(),
            daemon_headers: Default::default(),
            daemon_api: DaemonApi::default(),
        })
    }

    /// Asks dockerd for its newest API version and records it: `GET
    /// /version` without a version, whose answer states it in `Api-Version`
    /// as every answer does. Init asks once dockerd is ready (and logs the
    /// warning when the policy does not know that version); a standalone
    /// proxy, whose daemon may start after it, asks before its first request.
    pub async fn learn_daemon_api(&self) -> Result<Window, Reject> {
        let request = self
            .engine
            .request(http::Method::GET, "/version")
            .body(empty())
            .expect("a GET without headers is a valid request");
        let response = self.engine.send(request).await.map_err(|err| {
            warn!(error = %err.chain(), upstream = %self.engine.socket().display(), "dockerd did not answer GET /version");
            dockerd_unavailable()
        })?;
        self.daemon_api.heard_in(response.headers());
        self.daemon_headers.remember(response.headers());
        self.daemon_api.window().ok_or_else(|| {
            warn!(
                status = response.status().as_u16(),
                "dockerd's answer to GET /version states no Api-Version"
            );
            Reject {
                status: StatusCode::BAD_GATEWAY,
                rule: "dockerd-version",
                message: "dindbox: the daemon did not state its Engine API version (Api-Version), \
                          so the proxy cannot tell which versions to serve"
                    .into(),
            }
        })
    }

    /// The versions served now: learned from dockerd before the first request.
    async fn window(&self) -> Result<Window, Reject> {
        match self.daemon_api.window() {
            Some(window) => Ok(window),
            None => self.learn_daemon_api().await,
        }
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, asks open
    /// connections to finish their current request, and returns.
    pub async fn serve(self: Arc<Self>, listener: Listener, shutdown: CancellationToken) {
        serve::accept_loop(
            &listener,
            Limits::default(),
            &shutdown,
            |(accepted, peer), shutdown| {
                let proxy = self.clone();
                async move {
                    // The handshake runs here, not in the accept loop: a slow or
                    // silent client delays only itself.
                    if let Some(io) = accepted.into_io(&peer).await {
                        proxy.serve_connection(io, peer, shutdown).await;
                    }
                }
            },
        )
        .await;
    }

    async fn serve_connection(
        self: Arc<Self>,
        io: Box<dyn Io>,
        peer: Arc<str>,
        shutdown: CancellationToken,
    ) {
        metrics::global().connection_opened();
        let upstream = Arc::new(engine::Connection::default());
        let service = service_fn(|req| {
            let proxy = self.clone();
            let peer = peer.clone();
            let upstream = upstream.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req, &peer, &upstream).await) }
        });
        serve::connection(io, service, Limits::default(), &shutdown, &peer).await;
        metrics::global().connection_closed();
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        peer: &str,
        upstream: &engine::Connection,
    ) -> Response<Body> {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        // For the log lines only: a clone shares the URI's bytes.
        let uri = req.uri().clone();
        let path = uri.path();
        let mut endpoint = "refused";
        let result = self.forward(req, upstream, &mut endpoint).await;
        let outcome = match &result {
            Ok(_) => metrics::Outcome::Forwarded,
            Err(reject) if reject.status == StatusCode::SERVICE_UNAVAILABLE => {
                metrics::Outcome::DockerdUnavailable
            }
            Err(reject) => metrics::Outcome::Refused(reject.rule),
        };
        metrics::global().request(endpoint, outcome, started.elapsed());
        match result {
            Ok(response) => {
                debug!(%method, %path, status = response.status().as_u16(), remote = %peer, "proxied");
                response
            }
            Err(reject) => {
                let tenant = self
                    .policy
                    .owner
                    .as_ref()
                    .map_or("box", |(_, value)| value.as_str());
                warn!(rule = reject.rule, %method, %path, status = reject.status.as_u16(), tenant, remote = %peer, reason = %reject.message, "refused");
                let mut response = error_response(&reject);
                self.daemon_headers.stamp(response.headers_mut());
                self.daemon_api.advertise(response.headers_mut());
                response
            }
        }
    }

    /// Checks, rewrites and forwards one request; `endpoint` is set to the
    /// allow-list pattern it matched (for the metrics).
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        upstream: &engine::Connection,
        endpoint: &mut &'static str,
    ) -> Result<Response<Body>, Reject> {
        // Answering before the body is read: the client may still be sending
        // it (a build context, a swarm spec), so it is read first, and the
        // client hears the answer instead of a broken pipe.
        let (route, images, plan) = match self.before_body(&req, endpoint).await {
            Ok(Admitted::Forward {
                route,
                images,
                plan,
            }) => (route, images, plan),
            Ok(Admitted::Answered(response)) => {
                message::drain_request(req).await;
                return Ok(response);
            }
            Err(reject) => {
                message::drain_request(req).await;
                return Err(reject);
            }
        };
        let lookups = self.lookups(route.version);
        let answer = match &self.policy.owner {
            Some(_) => policy::ownership::answer(&route),
            None => policy::ownership::Answer::Plain,
        };
        let hijack = matches!(route.endpoint, Endpoint::Hijack | Endpoint::BuildKit);
        let client_upgrade = hijack.then(|| hyper::upgrade::on(&mut req));
        // `_budget` holds the inspected body's share of BODY_BUDGET until
        // dockerd has answered (and so has read the body forwarded to it).
        let (req, _budget) = self.upstream_request(req, &route, &lookups, hijack).await?;
        let req = match (&plan, &images) {
            (tags::Plan::Load(state), Some(images)) => {
                req.map(|body| tags::guard_load(body, images.clone(), state.clone()))
            }
            _ => req,
        };
        let sent = self.send(upstream, req).await;
        if let Some(refusal) = plan.refusal() {
            return Err(refusal);
        }
        let mut response = sent?;
        self.advertise_only_what_is_allowed(response.headers_mut());
        self.daemon_headers.remember(response.headers());
        if let Some(images) = images {
            response = match images.after(plan, response).await {
                Ok(response) => response,
                Err(streamed) => return Ok(streamed),
            };
        }
        match client_upgrade {
            Some(client) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                Ok(splice_upgraded(client, response))
            }
            _ => self.shape_response(route.endpoint, answer, response).await,
        }
    }

    /// What the proxy decides before it reads the body: the route, the owner
    /// checks of what it names, and the tag plan; or its own answer (a family
    /// that is off) or a refusal.
    async fn before_body(
        &self,
        req: &Request<Incoming>,
        endpoint: &mut &'static str,
    ) -> Result<Admitted, Reject> {
        let window = self.window().await?;
        let mut route =
            check::admit_within(&self.policy, window, req.method(), req.uri(), req.headers())?;
        *endpoint = route.pattern;
        if let Endpoint::Off(family, when_off) = route.endpoint {
            // A family that is off: Docker's own answer with the feature off
            // (`admit` returned the others as errors), given here, never forwarded.
            let body = policy::off::answer(family, when_off, req.method(), &route)?;
            let mut response = json_response(StatusCode::OK, body);
            self.daemon_headers.stamp(response.headers_mut());
            self.daemon_api.advertise(response.headers_mut());
            return Ok(Admitted::Answered(response));
        }
        // Standalone mode with an owner label: ask dockerd who owns what the
        // request names. Without one, only a create with `VolumesFrom` costs
        // an extra round trip (its sources' mounts are checked).
        self.lookups(route.version)
            .verify_target(&mut route)
            .await?;
        // Owner mode: a tag may only move if it is free or the owner's.
        let images = self.policy.owner.as_ref().map(|owner| {
            Arc::new(tags::Images {
                engine: self.engine.clone(),
                version: route.version,
                owner: owner.clone(),
                recorded: self.recorded.clone(),
            })
        });
        let plan = match &images {
            Some(images) => {
                images
                    .plan(&mut route, req.headers().get("X-Registry-Auth"))
                    .await?
            }
            None => tags::Plan::None,
        };
        Ok(Admitted::Forward {
            route,
            images,
            plan,
        })
    }

    /// The ownership lookups against dockerd, at the request's API version.
    fn lookups(&self, version: ApiVersion) -> lookups::Daemon<'_> {
        lookups::Daemon {
            engine: &self.engine,
            version,
            policy: &self.policy,
            owner: self.policy.owner.as_ref(),
        }
    }

    /// The request as dockerd gets it: the target the proxy rebuilt from the
    /// route, the body it checked (re-serialised) or streamed, and no
    /// hop-by-hop headers; with the inspected body's share of the budget.
    async fn upstream_request(
        &self,
        req: Request<Incoming>,
        route: &route::Route,
        lookups: &lookups::Daemon<'_>,
        hijack: bool,
    ) -> Result<(Request<Body>, Option<OwnedSemaphorePermit>), Reject> {
        let (mut parts, body) = req.into_parts();
        let mut budget = None;
        let body = if let Some(rule) = check::body_rule(route.endpoint) {
            budget = Some(self.reserve_body(&parts.headers).await?);
            let bytes = read_bounded(body, content_length(&parts.headers)).await?;
            let size = bytes.len();
            let (policy, headers) = (self.policy.clone(), parts.headers.clone());
            let mut checked = self
                .off_runtime(size, move || {
                    check::check_body(&policy, rule, &headers, &bytes)
                })
                .await??;
            if let Some(checked) = &mut checked {
                if route.endpoint == Endpoint::ContainerCreate {
                    lookups.verify_image_working_dir(checked).await?;
                }
                let references = policy::ownership::references(route.endpoint, checked);
                let pinned = lookups.verify_references(&references).await?;
                // The path's network, already checked and pinned to its id.
                let network = lookups.owner.and(route.param());
                policy::ownership::pin(route.endpoint, checked, &pinned, network)?;
            }
            let forwarded = self
                .off_runtime(size, move || {
                    checked.map(|json| json.to_vec()).unwrap_or_default()
                })
                .await?;
            full(forwarded)
        } else {
            stream(body)
        };
        strip_hop_by_hop(&mut parts.headers, hijack);
        forward_content_type(&mut parts.headers, route.body_type);
        // hyper re-frames the body: a fresh Content-Length, or chunked when unknown.
        parts.headers.remove(header::CONTENT_LENGTH);
        // Origin form (RFC 9112 §3.2.1), as it goes on the wire.
        let target = route.target();
        parts.uri = http::Uri::try_from(target.as_str())
            .map_err(|err| Reject::bad_request("path", format!("bad target {target:?}: {err}")))?;
        Ok((Request::from_parts(parts, body), budget))
    }

    /// Reserves room in [`BODY_BUDGET`] for a body about to be read whole:
    /// its Content-Length, or the body limit when it has none. A 503 when
    /// the budget stays full for [`BODY_BUDGET_WAIT`].
    async fn reserve_body(&self, headers: &HeaderMap) -> Result<OwnedSemaphorePermit, Reject> {
        let length = content_length(headers).map_or(BODY_LIMIT, |length| length.min(BODY_LIMIT));
        let kib = u32::try_from(length.div_ceil(1 << 10).max(1)).expect("at most the body limit");
        let reserved = self.body_budget.clone().acquire_many_owned(kib);
        match tokio::time::timeout(BODY_BUDGET_WAIT, reserved).await {
            Ok(permit) => Ok(permit.expect("the budget is never closed")),
            Err(_) => Err(Reject {
                status: StatusCode::SERVICE_UNAVAILABLE,
                rule: "body-budget",
                message: format!(
                    "dindbox: the proxy is busy checking other requests' bodies ({} MiB in flight); try again in a few seconds",
                    BODY_BUDGET >> 20
                ),
            }),
        }
    }

    /// Runs CPU-heavy work on a body of `size` bytes (checking it,
    /// serialising it): inline when the body is small, else on the blocking
    /// pool, at most `heavy_checks` at once; the others wait their turn
    /// without holding an I/O worker.
    async fn off_runtime<T: Send + 'static>(
        &self,
        size: usize,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Reject> {
        if size < INLINE_CHECK_LIMIT {
            return Ok(work());
        }
        let slot = self.heavy_checks.clone().acquire_owned().await;
        let slot = slot.expect("the check slots are never closed");
        let ran = tokio::task::spawn_blocking(move || {
            let out = work();
            drop(slot);
            out
        });
        ran.await.map_err(|err| {
            warn!(error = %err, "a body check failed");
            Reject {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                rule: "body-check",
                message: "dindbox: checking the request body failed".into(),
            }
        })
    }

    async fn send(
        &self,
        upstream: &engine::Connection,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, Reject> {
        let sent = self.engine.forward(upstream, req).await;
        sent.map_err(|err| {
            warn!(error = %err.chain(), upstream = %self.engine.socket().display(), "dockerd did not answer");
            dockerd_unavailable()
        })
    }

    /// dockerd's answer as the client gets it: streamed as it comes, except
    /// the answers the proxy must read first (the version, which states the
    /// window's newest, and in owner mode the ones it checks or trims).
    async fn shape_response(
        &self,
        endpoint: Endpoint,
        answer: policy::ownership::Answer,
        response: Response<Incoming>,
    ) -> Result<Response<Body>, Reject> {
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        if !parts.status.is_success() {
            return Ok(Response::from_parts(parts, stream(body)));
        }
        if let (Endpoint::Version, Some(window)) = (endpoint, self.daemon_api.window()) {
            parts.headers.remove(header::CONTENT_LENGTH);
            let body = cap_version_body(body, window.max).await;
            return Ok(Response::from_parts(parts, body));
        }
        match &self.policy.owner {
            Some(owner) => owner_answer(owner, answer, parts, body).await,
            None => Ok(Response::from_parts(parts, stream(body))),
        }
    }

    /// Clients negotiate from `Api-Version` (and `Builder-Version` on `/_ping`):
    /// never let them pick a version or a builder the proxy would refuse.
    fn advertise_only_what_is_allowed(&self, headers: &mut HeaderMap) {
        self.daemon_api.relay(headers);
        if !self.policy.allow_buildkit && headers.contains_key(BUILDER_VERSION) {
            headers.insert(BUILDER_VERSION, HeaderValue::from_static("1"));
        }
    }
}

/// [`Proxy::before_body`]'s outcome when it does not refuse.
enum Admitted {
    /// The proxy's own answer, never forwarded.
    Answered(Response<Body>),
    /// Go on to the body and dockerd.
    Forward {
        route: route::Route,
        images: Option<Arc<tags::Images>>,
        plan: tags::Plan,
    },
}

/// `GET /version`'s `ApiVersion`, capped like the `Api-Version` header.
async fn cap_version_body(body: Incoming, cap: ApiVersion) -> Body {
    let Ok(bytes) = Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes())
    else {
        return empty();
    };
    let Ok(mut version) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return full(bytes.to_vec());
    };
    version::cap_version_answer(&mut version, cap);
    full(version.to_string().into_bytes())
}

/// In owner mode, the answers that could show another owner's objects:
/// a created volume is checked, `system df` and the built-in networks are
/// trimmed; the rest stream through.
async fn owner_answer(
    owner: &policy::ownership::Owner,
    answer: policy::ownership::Answer,
    mut parts: http::response::Parts,
    body: Incoming,
) -> Result<Response<Body>, Reject> {
    use policy::ownership::Answer;
    match answer {
        Answer::Plain => Ok(Response::from_parts(parts, stream(body))),
        Answer::VolumeCreated => {
            let bytes = read_answer(body).await?;
            lookups::check_created_volume(owner, "", &bytes)?;
            Ok(Response::from_parts(parts, full(bytes.to_vec())))
        }
        Answer::DiskUsage | Answer::BuiltinNetwork => {
            let mut json: serde_json::Value = serde_json::from_slice(&read_answer(body).await?)
                .map_err(|_| Reject {
                    status: StatusCode::BAD_GATEWAY,
                    rule: "owner-check",
                    message: "dindbox: dockerd's answer is not JSON".into(),
                })?;
            match answer {
                Answer::DiskUsage => policy::ownership::filter_disk_usage(owner, &mut json),
                _ => policy::ownership::hide_endpoints(&mut json),
            }
            parts.headers.remove(header::CONTENT_LENGTH);
            Ok(Response::from_parts(
                parts,
                full(json.to_string().into_bytes()),
            ))
        }
    }
}

/// dockerd switched protocols: splice the two upgraded connections and give
/// the client the `101` (its headers as dockerd sent them, after the
/// advertised versions were capped).
fn splice_upgraded(
    client: hyper::upgrade::OnUpgrade,
    mut response: Response<Incoming>,
) -> Response<Body> {
    hijack::splice(client, hyper::upgrade::on(&mut response));
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, empty())
}

/// Heavy body checks at once: one fewer than the cores, at least one.
fn heavy_check_slots() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).max(1)
}

/// dockerd did not answer: the client hears why, and that it may retry.
fn dockerd_unavailable() -> Reject {
    Reject {
        status: StatusCode::SERVICE_UNAVAILABLE,
        rule: "dockerd-unavailable",
        message: "dindbox: the inner dockerd is not answering (it may be restarting); try again in a few seconds".into(),
    }
}
