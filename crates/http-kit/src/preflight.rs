//! CORS for preflights only: tower-http's CORS layer answers every `OPTIONS` request as a
//! preflight, so `OPTIONS /no-such-route` was a 200 with an empty body.
//!
//! A preflight is an `OPTIONS` request that names `Access-Control-Request-Method` (Fetch
//! standard, "CORS-preflight request"), and only those go to the CORS layer's answer. Any other
//! `OPTIONS` reaches the routes, which answer it as any method they do not serve: 404 off a
//! route, 405 with `Allow` on one. Hand-written: tower-http has no setting for it.

use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Method, Request, Response, header};
use tower::{Layer, Service};
use tower_http::cors::{Cors, CorsLayer};

/// [`CorsLayer`] whose preflight answer is given to preflights only.
#[derive(Clone)]
pub struct PreflightsOnlyLayer(pub CorsLayer);

impl<S> Layer<S> for PreflightsOnlyLayer {
    type Service = PreflightsOnly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PreflightsOnly(self.0.layer(inner))
    }
}

/// The CORS service, stepped around for an `OPTIONS` request that is no preflight. The inner
/// service is the CORS service's own (no second copy to clone for every request).
#[derive(Clone)]
pub struct PreflightsOnly<S>(Cors<S>);

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PreflightsOnly<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<<Cors<S> as Service<Request<ReqBody>>>::Future, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The CORS service is ready when its inner service is, which either branch then calls.
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let no_preflight = req.method() == Method::OPTIONS
            && !req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if no_preflight {
            Either::Right(self.0.get_mut().call(req))
        } else {
            Either::Left(self.0.call(req))
        }
    }
}
