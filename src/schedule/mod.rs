//! Scheduled batch runs of the detections.
pub mod window;
