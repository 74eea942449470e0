//! Operational counters as CloudWatch Embedded Metric Format lines on stdout: on Lambda,
//! CloudWatch turns them into metrics with no agent and no API call on the request path.

use serde_json::json;

pub const NAMESPACE: &str = "Backend";

/// Emits one count of `name`, dimensioned by the function's name.
pub fn count(name: &str) {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let line = json!({
        "_aws": {
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [{ "Name": name, "Unit": "Count" }],
            }],
        },
        "Function": function,
        name: 1,
    });
    println!("{line}");
}
