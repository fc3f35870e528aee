//! A small builder of ONNX models in code, for tests.
//!
//! ```
//! use smof_converter::onnx::builder::{attr_ints, ModelBuilder};
//! let mut b = ModelBuilder::new(17);
//! b.input("x", &[1, 3, 8, 8]).output("y");
//! b.init("w", &[4, 3, 3, 3], &vec![0.1; 108]);
//! b.node("Conv", &["x", "w"], &["y"], vec![attr_ints("pads", &[1, 1, 1, 1])]);
//! let onnx: Vec<u8> = b.bytes();
//! # assert!(!onnx.is_empty());
//! ```

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use prost::Message;

/// Builds a single-graph ONNX model.
#[derive(Clone, Debug, Default)]
pub struct ModelBuilder {
    /// Default-domain opset.
    pub opset: i64,
    /// Extra `(domain, version)` opset imports.
    pub extra_opsets: Vec<(String, i64)>,
    /// The graph being built.
    pub graph: GraphProto,
}

/// A float32 tensor value info; a negative dim is symbolic (`N`).
pub fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            denotation: None,
            value: Some(if d < 0 {
                tensor_shape_proto::dimension::Value::DimParam("N".into())
            } else {
                tensor_shape_proto::dimension::Value::DimValue(d)
            }),
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            denotation: None,
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

/// A float32 tensor (raw data).
pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// An int64 tensor.
pub fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int64 as i32),
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

fn attr(name: &str, t: AttributeType) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(t as i32),
        ..Default::default()
    }
}

/// An int attribute.
pub fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: Some(v),
        ..attr(name, AttributeType::Int)
    }
}

/// A float attribute.
pub fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        f: Some(v),
        ..attr(name, AttributeType::Float)
    }
}

/// An ints attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, AttributeType::Ints)
    }
}

/// A string attribute.
pub fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        s: Some(v.as_bytes().to_vec()),
        ..attr(name, AttributeType::String)
    }
}

/// A tensor attribute.
pub fn attr_t(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        t: Some(t),
        ..attr(name, AttributeType::Tensor)
    }
}

impl ModelBuilder {
    /// An empty model importing `opset` of the default domain.
    pub fn new(opset: i64) -> Self {
        ModelBuilder {
            opset,
            extra_opsets: Vec::new(),
            graph: GraphProto {
                name: Some("test".into()),
                ..Default::default()
            },
        }
    }
    /// Adds a float32 graph input; a negative dim is symbolic.
    pub fn input(&mut self, name: &str, dims: &[i64]) -> &mut Self {
        self.graph.input.push(value_info(name, dims));
        self
    }
    /// Adds a graph output (shape not declared).
    pub fn output(&mut self, name: &str) -> &mut Self {
        self.graph.output.push(ValueInfoProto {
            name: Some(name.into()),
            ..Default::default()
        });
        self
    }
    /// Adds a float32 initializer.
    pub fn init(&mut self, name: &str, dims: &[i64], data: &[f32]) -> &mut Self {
        self.graph.initializer.push(tensor_f32(name, dims, data));
        self
    }
    /// Adds an int64 initializer.
    pub fn init_i64(&mut self, name: &str, dims: &[i64], data: &[i64]) -> &mut Self {
        self.graph.initializer.push(tensor_i64(name, dims, data));
        self
    }
    /// Adds a default-domain node named after its first output.
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> &mut Self {
        self.graph.node.push(NodeProto {
            name: outputs.first().map(|s| s.to_string()),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        });
        self
    }
    /// The model.
    pub fn build(&self) -> ModelProto {
        let mut opset_import = vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(self.opset),
        }];
        for (d, v) in &self.extra_opsets {
            opset_import.push(OperatorSetIdProto {
                domain: Some(d.clone()),
                version: Some(*v),
            });
        }
        ModelProto {
            ir_version: Some(8),
            opset_import,
            producer_name: Some("smof-converter-tests".into()),
            producer_version: Some("0".into()),
            graph: Some(self.graph.clone()),
            ..Default::default()
        }
    }
    /// The model, serialised.
    pub fn bytes(&self) -> Vec<u8> {
        self.build().encode_to_vec()
    }
}
