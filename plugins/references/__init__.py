"""Built-in reference (labeling) plugins: ASE calculators behind the :class:`pesmith.reference.Reference` contract."""
