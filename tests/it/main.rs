//! Integration tests: one binary, real Postgres and Redis, the real routers.

mod support;

mod health;
mod lambda_events;
mod layers;
mod logs;
mod migrations;
