//! Helpers for the workspace integration tests: building ONNX graphs in code, running them
//! through tract-onnx as the independent reference, and through SMOF.
