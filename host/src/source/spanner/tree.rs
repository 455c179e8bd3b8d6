//! Turns a Spanner result value into a JSON tree, decoding STRUCTs by name.
//!
//! Spanner sends STRUCT values as positional lists; the field names live only
//! in the result set's metadata. [`Shape`] captures that metadata once per
//! query, and [`Shape::to_json`] walks a value with it, producing objects keyed
//! by field name that serde can then deserialize into typed records.

use google_cloud_spanner::model;
use google_cloud_spanner::types::{Type, TypeCode};
use google_cloud_spanner::value::{Kind, Value};
use serde_json::Value as Json;

/// A result value that does not have the shape its metadata announced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// An array column's value is not a list.
    #[error("expected an array, got {0:?}")]
    ExpectedArray(Kind),
    /// A struct's value is not a list.
    #[error("expected a struct, got {0:?}")]
    ExpectedStruct(Kind),
    /// A struct's value has another number of values than it has fields.
    #[error("struct has {values} values for {fields} fields")]
    FieldCount {
        /// How many values came.
        values: usize,
        /// How many fields the struct has.
        fields: usize,
    },
    /// A struct field's value does not have its shape.
    #[error("{name}: {error}")]
    Field {
        /// The field.
        name: String,
        /// What is wrong with its value.
        error: Box<ShapeError>,
    },
    /// A scalar's value is a list or of an unknown kind.
    #[error("unexpected scalar of kind {0:?}")]
    UnexpectedScalar(Kind),
}

/// The structure of a result column, as far as decoding needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A scalar: its JSON form is what Spanner sent (strings stay strings).
    Scalar,
    /// An array of elements of one shape.
    Array(Box<Shape>),
    /// A struct with named fields, in wire order.
    Struct(Vec<(String, Shape)>),
}

impl Shape {
    /// The shape of a result column type.
    pub fn of(ty: &Type) -> Self {
        match ty.code() {
            TypeCode::Array => ty.array_element_type().map_or(Shape::Scalar, |element| {
                Shape::Array(Box::new(Shape::of(element)))
            }),
            TypeCode::Struct => ty
                .struct_type()
                .map_or(Shape::Struct(Vec::new()), Shape::of_struct),
            _ => Shape::Scalar,
        }
    }

    fn of_model(ty: &model::Type) -> Self {
        Shape::of(&Type::from(ty.clone()))
    }

    fn of_struct(fields: &model::StructType) -> Self {
        Shape::Struct(
            fields
                .fields
                .iter()
                .map(|field| {
                    let shape = field
                        .r#type
                        .as_deref()
                        .map_or(Shape::Scalar, Shape::of_model);
                    (field.name.clone(), shape)
                })
                .collect(),
        )
    }

    /// Decodes `value` into JSON, naming struct fields.
    ///
    /// Fails when the value does not have the shape the metadata announced.
    pub fn to_json(&self, value: &Value) -> Result<Json, ShapeError> {
        if value.is_null() {
            return Ok(Json::Null);
        }
        match self {
            Shape::Scalar => scalar_to_json(value),
            Shape::Array(element) => {
                let list = value
                    .as_list()
                    .ok_or_else(|| ShapeError::ExpectedArray(value.kind()))?;
                list.iter().map(|item| element.to_json(item)).collect()
            }
            Shape::Struct(fields) => {
                let list = value
                    .as_list()
                    .ok_or_else(|| ShapeError::ExpectedStruct(value.kind()))?;
                if list.len() != fields.len() {
                    return Err(ShapeError::FieldCount {
                        values: list.len(),
                        fields: fields.len(),
                    });
                }
                let mut object = serde_json::Map::with_capacity(fields.len());
                for ((name, shape), item) in fields.iter().zip(list.iter()) {
                    let decoded = shape.to_json(item).map_err(|error| ShapeError::Field {
                        name: name.clone(),
                        error: Box::new(error),
                    })?;
                    object.insert(name.clone(), decoded);
                }
                Ok(Json::Object(object))
            }
        }
    }
}

fn scalar_to_json(value: &Value) -> Result<Json, ShapeError> {
    match value.kind() {
        Kind::Null => Ok(Json::Null),
        Kind::Bool => Ok(Json::Bool(value.as_bool().unwrap_or_default())),
        Kind::String => Ok(Json::String(value.as_str().unwrap_or_default().to_owned())),
        Kind::Number => {
            let number = value.as_f64().unwrap_or_default();
            Ok(serde_json::Number::from_f64(number).map_or(Json::Null, Json::Number))
        }
        other => Err(ShapeError::UnexpectedScalar(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_spanner::types;

    #[test]
    fn scalars_keep_their_wire_form() {
        assert_eq!(
            Shape::Scalar.to_json(&Value::from("7")).unwrap(),
            Json::from("7")
        );
        assert_eq!(
            Shape::Scalar.to_json(&Value::from(true)).unwrap(),
            Json::Bool(true)
        );
        assert_eq!(Shape::Scalar.to_json(&Value::null()).unwrap(), Json::Null);
        assert_eq!(
            Shape::Scalar.to_json(&Value::from(1.5f64)).unwrap(),
            Json::from(1.5)
        );
    }

    #[test]
    fn arrays_decode_elementwise() {
        let shape = Shape::of(&types::array(types::string()));
        assert_eq!(shape, Shape::Array(Box::new(Shape::Scalar)));
        let value = Value::from(vec!["a".to_string(), "b".to_string()]);
        assert_eq!(
            shape.to_json(&value).unwrap(),
            serde_json::json!(["a", "b"])
        );
    }

    #[test]
    fn struct_shape_mismatch_is_an_error() {
        let shape = Shape::Struct(vec![
            ("a".into(), Shape::Scalar),
            ("b".into(), Shape::Scalar),
        ]);
        let value = Value::from(vec!["only one".to_string()]);
        let err = shape.to_json(&value).unwrap_err();
        assert_eq!(
            err,
            ShapeError::FieldCount {
                values: 1,
                fields: 2
            }
        );
        assert!(err.to_string().contains("1 values for 2 fields"), "{err}");
        let nested = Shape::Struct(vec![("outer".into(), shape)]);
        let err = nested.to_json(&Value::from(vec![value])).unwrap_err();
        assert_eq!(err.to_string(), "outer: struct has 1 values for 2 fields");
    }

    #[test]
    fn struct_fields_are_named() {
        let shape = Shape::Struct(vec![
            ("a".into(), Shape::Scalar),
            ("b".into(), Shape::Scalar),
        ]);
        let value = Value::from(vec!["x".to_string(), "y".to_string()]);
        assert_eq!(
            shape.to_json(&value).unwrap(),
            serde_json::json!({"a": "x", "b": "y"})
        );
    }
}
