//! Session settings shared by the dump, the restore and the verification. The rows' text (and so
//! the checksums) depends on them: both sides must format values identically.

/// Settings for a connection that dumps, restores or verifies. Long statements are expected
/// (one COPY per table), so the pool's statement timeout is lifted.
pub const SETTINGS: &str = "SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SET client_min_messages = warning;
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
SET TimeZone = 'UTC';
SET extra_float_digits = 3;
SET bytea_output = 'hex';
SET search_path = public;
SET check_function_bodies = false;
";
