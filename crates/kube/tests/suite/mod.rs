mod apiserver;
mod chart;
pub(crate) mod controller;
mod crd;
mod decide;
mod e2e;
pub(crate) mod pod;
pub(crate) mod tenancy;
