mod chart;
mod controller;
mod crd;
mod decide;
mod pod;
mod tenancy;
