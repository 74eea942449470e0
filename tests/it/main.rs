//! Integration tests: one binary, real Postgres and Redis, the real routers.

mod support;

mod auth;
mod backup;
mod containers;
mod contract;
mod error_reports;
mod health;
mod infrastructure;
mod jwt;
mod lambda_events;
mod layers;
mod logs;
mod metrics;
mod migrations;
mod rate_limit;
mod resilience;
mod secrets;
mod settings;
mod shutdown;
mod template;
mod traces;
mod uploads;
mod users;
