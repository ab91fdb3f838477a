//! Install the locked wheels for one arch into site-packages, per the wheel spec.
