//! A route group's router on Lambda, from the same `#[utoipa::path]` declarations as its
//! OpenAPI operations, without building those operations.
//!
//! utoipa-axum's `routes!` gives both the router and each operation's description (parameters,
//! bodies, schemas, answers). A function on Lambda serves only the router: the document is the
//! committed one, which the health function serves. Building every operation at each cold start,
//! only to drop it, costs start time and code (about 98 KB of health's zip, docs/BENCHMARKS.md).
//! [`declared_routes!`](crate::declared_routes) routes each handler at its declaration's path and
//! methods and never asks for its operation, so that code is not linked into the function.

use axum::{Router, handler::Handler, routing::MethodRouter};
use utoipa_axum::PathItemExt;

/// Routes `handler` at the path and methods that its declaration `P` (the `__path_` type that
/// `#[utoipa::path]` makes) names.
pub fn route<P, H, T, S>(router: Router<S>, handler: &H) -> Router<S>
where
    P: utoipa::Path,
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    let methods = P::methods()
        .iter()
        .fold(MethodRouter::new(), |methods, method| {
            methods.on(method.to_method_filter(), handler.clone())
        });
    router.route(&P::path(), methods)
}

/// A router of the handlers named, each at its `#[utoipa::path]` path and methods:
/// `declared_routes!(me, update_me, show)`. The calling crate names the same handlers in its
/// `OpenApiRouter` (utoipa-axum's `routes!`) for its part of the document.
#[macro_export]
macro_rules! declared_routes {
    ( $( $handler:ident ),+ $(,)? ) => {{
        let router = ::axum::Router::new();
        $(
            let router = ::utoipa_axum::paste! {
                $crate::declared::route::<[<__path_ $handler>], _, _, _>(router, &$handler)
            };
        )+
        router
    }};
}
