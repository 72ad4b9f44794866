//! One declaration per table: [`table!`] turns a list of columns into the column-name constants,
//! the Arrow schema, a borrowed row struct and a builder whose `append(&row)` / `finish()` make
//! record batches of exactly that schema. Each column is written once, so a column cannot be
//! added to the schema and forgotten in the builder, and two columns of the same type cannot be
//! swapped: the builder appends each field of the row to the array of the same name.
//!
//! The column types ([`Column`]) say how a row's value becomes Arrow: [`Ts`] (µs, UTC, always
//! there), [`OptTs`], [`Utf8`], [`Int64`], [`Int32`], [`UInt64`], [`Bool`], [`Binary`],
//! [`StrList`], and [`Provenance`] (the four provenance columns every ingested row carries).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field};

/// How a column's value in a row struct becomes an Arrow array.
pub trait Column {
    /// The value in the row struct.
    type Value<'a>: Clone + std::fmt::Debug + Default;
    type Builder: Default;
    /// The column's fields (one, or several for a group such as [`Provenance`]).
    fn fields(name: &'static str, nullable: bool) -> Vec<Field>;
    fn append(b: &mut Self::Builder, v: &Self::Value<'_>);
    /// Pushes the built arrays, in the order of [`Column::fields`].
    fn finish(b: &mut Self::Builder, out: &mut Vec<ArrayRef>);
}

/// A timestamp builder in µs, UTC.
pub struct TimeBuilder(TimestampMicrosecondBuilder);

impl Default for TimeBuilder {
    fn default() -> Self {
        TimeBuilder(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
    }
}

/// `Timestamp(µs, "UTC")`, always present: µs since the epoch.
pub struct Ts;

impl Column for Ts {
    type Value<'a> = i64;
    type Builder = TimeBuilder;
    fn fields(name: &'static str, nullable: bool) -> Vec<Field> {
        vec![Field::new(name, super::time_type(), nullable)]
    }
    fn append(b: &mut TimeBuilder, v: &i64) {
        b.0.append_value(*v);
    }
    fn finish(b: &mut TimeBuilder, out: &mut Vec<ArrayRef>) {
        out.push(Arc::new(b.0.finish()));
    }
}

/// `Timestamp(µs, "UTC")`, possibly null.
pub struct OptTs;

impl Column for OptTs {
    type Value<'a> = Option<i64>;
    type Builder = TimeBuilder;
    fn fields(name: &'static str, nullable: bool) -> Vec<Field> {
        vec![Field::new(name, super::time_type(), nullable)]
    }
    fn append(b: &mut TimeBuilder, v: &Option<i64>) {
        b.0.append_option(*v);
    }
    fn finish(b: &mut TimeBuilder, out: &mut Vec<ArrayRef>) {
        out.push(Arc::new(b.0.finish()));
    }
}

macro_rules! scalar_column {
    ($(#[$m:meta])* $name:ident, $value:ty, $builder:ty, $data_type:expr) => {
        $(#[$m])*
        pub struct $name;

        impl Column for $name {
            type Value<'a> = Option<$value>;
            type Builder = $builder;
            fn fields(name: &'static str, nullable: bool) -> Vec<Field> {
                vec![Field::new(name, $data_type, nullable)]
            }
            fn append(b: &mut $builder, v: &Self::Value<'_>) {
                b.append_option(*v);
            }
            fn finish(b: &mut $builder, out: &mut Vec<ArrayRef>) {
                out.push(Arc::new(b.finish()));
            }
        }
    };
}

scalar_column!(
    /// `Utf8`.
    Utf8, &'a str, StringBuilder, DataType::Utf8
);
scalar_column!(
    /// `Int64`.
    Int64, i64, Int64Builder, DataType::Int64
);
scalar_column!(
    /// `Int32`.
    Int32, i32, Int32Builder, DataType::Int32
);
scalar_column!(
    /// `UInt64`.
    UInt64, u64, UInt64Builder, DataType::UInt64
);
scalar_column!(
    /// `Boolean`.
    Bool, bool, BooleanBuilder, DataType::Boolean
);
scalar_column!(
    /// `Binary`.
    Binary, &'a [u8], BinaryBuilder, DataType::Binary
);

/// A list of strings (`List<Utf8>`), empty when there are none.
pub struct StrList;

impl Column for StrList {
    type Value<'a> = &'a [String];
    type Builder = ListBuilder<StringBuilder>;
    fn fields(name: &'static str, nullable: bool) -> Vec<Field> {
        vec![Field::new(name, DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), nullable)]
    }
    fn append(b: &mut ListBuilder<StringBuilder>, v: &&[String]) {
        for s in *v {
            b.values().append_value(s);
        }
        b.append(true);
    }
    fn finish(b: &mut ListBuilder<StringBuilder>, out: &mut Vec<ArrayRef>) {
        out.push(Arc::new(b.finish()));
    }
}

/// The provenance group: `source`, `sourcetype`, `source_record`, `source_offset` (see
/// [`super::provenance`]).
pub struct Provenance;

#[derive(Default)]
pub struct ProvenanceBuilder {
    source: StringBuilder,
    sourcetype: StringBuilder,
    record: Int64Builder,
    offset: Int64Builder,
}

impl Column for Provenance {
    type Value<'a> = super::provenance::Provenance<'a>;
    type Builder = ProvenanceBuilder;
    fn fields(_name: &'static str, _nullable: bool) -> Vec<Field> {
        super::provenance::fields()
    }
    fn append(b: &mut ProvenanceBuilder, p: &super::provenance::Provenance<'_>) {
        b.source.append_value(p.source);
        b.sourcetype.append_value(p.sourcetype);
        b.record.append_option(p.record);
        b.offset.append_option(p.offset);
    }
    fn finish(b: &mut ProvenanceBuilder, out: &mut Vec<ArrayRef>) {
        out.push(Arc::new(b.source.finish()));
        out.push(Arc::new(b.sourcetype.finish()));
        out.push(Arc::new(b.record.finish()));
        out.push(Arc::new(b.offset.finish()));
    }
}

/// Declares a table's columns once:
///
/// ```text
/// table! {
///     /// One `endpoint.processes` row.
///     pub struct ProcessRow / ProcessesBuilder {
///         /// When the process started.
///         time_us: Ts ["_time"] not null;
///         action: Utf8 ["action" => ACTION];
///         …
///         provenance: Provenance [""];
///     }
/// }
/// ```
///
/// gives `pub const ACTION: &str = "action"` (for each `=> NAME`), `pub fn schema() -> SchemaRef`
/// (columns in the order given; nullable unless `not null`), the row struct `ProcessRow<'a>` with
/// one public field per column, and `ProcessesBuilder` with `append(&row)`, `len()`,
/// `is_empty()` and `finish() -> Result<RecordBatch, ArrowError>`.
#[macro_export]
macro_rules! table {
    (
        $(#[$meta:meta])*
        pub struct $row:ident / $builder:ident {
            $(
                $(#[$field_meta:meta])*
                $field:ident : $ty:ident [$name:expr $(=> $constant:ident)?] $($not:ident $null:ident)?;
            )*
        }
    ) => {
        $(
            $(
                #[doc = concat!("The `", stringify!($field), "` column's name.")]
                pub const $constant: &str = $name;
            )?
        )*

        /// The table's Arrow schema, built once.
        pub fn schema() -> arrow::datatypes::SchemaRef {
            static SCHEMA: std::sync::LazyLock<arrow::datatypes::SchemaRef> = std::sync::LazyLock::new(|| {
                let mut fields: Vec<arrow::datatypes::Field> = Vec::new();
                $(
                    fields.extend(<$crate::cim::column::$ty as $crate::cim::column::Column>::fields(
                        $name,
                        $crate::table!(@nullable $($not $null)?),
                    ));
                )*
                std::sync::Arc::new(arrow::datatypes::Schema::new(fields))
            });
            SCHEMA.clone()
        }

        $(#[$meta])*
        #[derive(Debug, Clone, Default)]
        pub struct $row<'a> {
            $(
                $(#[$field_meta])*
                pub $field: <$crate::cim::column::$ty as $crate::cim::column::Column>::Value<'a>,
            )*
        }

        #[doc = concat!("Builds batches of [`", stringify!($row), "`] rows.")]
        #[derive(Default)]
        pub struct $builder {
            len: usize,
            $( $field: <$crate::cim::column::$ty as $crate::cim::column::Column>::Builder, )*
        }

        impl $builder {
            pub fn append(&mut self, row: &$row<'_>) {
                $( <$crate::cim::column::$ty as $crate::cim::column::Column>::append(&mut self.$field, &row.$field); )*
                self.len += 1;
            }

            /// Rows appended since the last batch.
            pub fn len(&self) -> usize {
                self.len
            }

            pub fn is_empty(&self) -> bool {
                self.len == 0
            }

            /// The rows appended since the last call, as a batch of [`schema`].
            pub fn finish(&mut self) -> Result<arrow::record_batch::RecordBatch, arrow::error::ArrowError> {
                let mut columns: Vec<arrow::array::ArrayRef> = Vec::new();
                $( <$crate::cim::column::$ty as $crate::cim::column::Column>::finish(&mut self.$field, &mut columns); )*
                self.len = 0;
                arrow::record_batch::RecordBatch::try_new(schema(), columns)
            }
        }
    };
    (@nullable not null) => { false };
    (@nullable) => { true };
}
