//! Errors in the layout's own terms: each names the file, the partition (or network), the
//! field, what is wrong and what would fix it. Validation collects all of them before reporting.

use std::fmt;

/// Which partition an error is about: by name when it has a usable one, else by position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionLabel {
    /// `partition "alpha"`: the `name` the layout gave it (even if the name itself is invalid).
    Name(String),
    /// `partition[2]`: the third `[[partition]]` table, which has no string `name`.
    Index(usize),
}

impl fmt::Display for PartitionLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionLabel::Name(name) => write!(f, "partition {name:?}"),
            PartitionLabel::Index(index) => write!(f, "partition[{index}]"),
        }
    }
}

/// Which network an error is about: by name when it has a usable one, else by position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkLabel {
    /// `network "lan"`: the `name` the layout gave it (even if the name itself is invalid).
    Name(String),
    /// `network[1]`: the second `[[network]]` table, which has no string `name`.
    Index(usize),
}

impl fmt::Display for NetworkLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkLabel::Name(name) => write!(f, "network {name:?}"),
            NetworkLabel::Index(index) => write!(f, "network[{index}]"),
        }
    }
}

/// One thing wrong with a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutError {
    /// The layout file, as the caller named it.
    pub file: String,
    /// Line and column (1-based), for TOML syntax errors.
    pub location: Option<(usize, usize)>,
    /// The partition at fault, if the error is about one.
    pub partition: Option<PartitionLabel>,
    /// The network at fault, if the error is about one (then `partition` is `None`).
    pub network: Option<NetworkLabel>,
    /// The field at fault (`memory[1].size`), if the error is about one.
    pub field: Option<String>,
    /// What is wrong and what would fix it.
    pub message: String,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(partition) = &self.partition {
            write!(f, ": {partition}")?;
        }
        if let Some(network) = &self.network {
            write!(f, ": {network}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything wrong with a layout, in the order found (file order, then cross-partition
/// checks). Displayed one error per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutErrors(pub Vec<LayoutError>);

impl fmt::Display for LayoutErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LayoutErrors {}

/// Collects errors for one layout file.
pub(crate) struct Report {
    file: String,
    errors: Vec<LayoutError>,
}

impl Report {
    pub(crate) fn new(file: String) -> Self {
        Report {
            file,
            errors: Vec::new(),
        }
    }

    /// A TOML syntax error at `line`:`column`.
    pub(crate) fn syntax(&mut self, line: usize, column: usize, message: String) {
        self.push(Some((line, column)), Subject::Layout, None, message);
    }

    /// An error about the layout as a whole.
    pub(crate) fn layout(&mut self, message: impl Into<String>) {
        self.push(None, Subject::Layout, None, message.into());
    }

    /// An error about `field` of `partition`.
    pub(crate) fn field(
        &mut self,
        partition: &PartitionLabel,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(
            None,
            Subject::Partition(partition.clone()),
            Some(field.into()),
            message.into(),
        );
    }

    /// An error about `network`, or about its `field` if one is given.
    pub(crate) fn network(
        &mut self,
        network: &NetworkLabel,
        field: Option<&str>,
        message: impl Into<String>,
    ) {
        self.push(
            None,
            Subject::Network(network.clone()),
            field.map(str::to_string),
            message.into(),
        );
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many errors so far (to tell whether a check added any).
    pub(crate) fn len(&self) -> usize {
        self.errors.len()
    }

    pub(crate) fn into_errors(self) -> LayoutErrors {
        LayoutErrors(self.errors)
    }

    fn push(
        &mut self,
        location: Option<(usize, usize)>,
        subject: Subject,
        field: Option<String>,
        message: String,
    ) {
        let (partition, network) = match subject {
            Subject::Layout => (None, None),
            Subject::Partition(label) => (Some(label), None),
            Subject::Network(label) => (None, Some(label)),
        };
        self.errors.push(LayoutError {
            file: self.file.clone(),
            location,
            partition,
            network,
            field,
            message,
        });
    }
}

/// What one error is about: the layout as a whole, a partition or a network.
enum Subject {
    Layout,
    Partition(PartitionLabel),
    Network(NetworkLabel),
}
