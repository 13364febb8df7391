mod apiserver;
mod chart;
pub(crate) mod controller;
mod crd;
mod decide;
pub(crate) mod pod;
pub(crate) mod tenancy;
