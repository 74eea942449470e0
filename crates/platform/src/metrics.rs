//! Operational metrics as CloudWatch Embedded Metric Format lines on stdout: on Lambda,
//! CloudWatch turns them into metrics with no agent and no API call on the request path.

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "Backend";
/// Backups and restore drills: `BackupSucceeded` and `DrillSucceeded`, by `Environment`.
pub const BACKUP_NAMESPACE: &str = "Backend/Backup";

/// Emits one count of `name`, dimensioned by the function's name.
pub fn count(name: &str) {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    emit(NAMESPACE, name, 1, "Count", &[("Function", &function)]);
}

/// Emits one value of `name` in `namespace`, with the given dimensions.
pub fn emit(namespace: &str, name: &str, value: i64, unit: &str, dimensions: &[(&str, &str)]) {
    println!("{}", line(namespace, name, value, unit, dimensions));
}

/// The EMF object for one value.
pub fn line(
    namespace: &str,
    name: &str,
    value: i64,
    unit: &str,
    dimensions: &[(&str, &str)],
) -> Value {
    let names: Vec<&str> = dimensions.iter().map(|(n, _)| *n).collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [names],
                "Metrics": [{ "Name": name, "Unit": unit }],
            }],
        }),
    );
    for (dimension, value) in dimensions {
        line.insert((*dimension).into(), json!(value));
    }
    line.insert(name.into(), json!(value));
    Value::Object(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_carries_its_namespace_dimensions_and_value() {
        let l = line(
            BACKUP_NAMESPACE,
            "DrillSucceeded",
            0,
            "Count",
            &[("Environment", "production")],
        );
        let metric = &l["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(metric["Namespace"], "Backend/Backup");
        assert_eq!(metric["Dimensions"], json!([["Environment"]]));
        assert_eq!(metric["Metrics"][0]["Name"], "DrillSucceeded");
        assert_eq!(l["Environment"], "production");
        assert_eq!(l["DrillSucceeded"], 0);
    }
}
