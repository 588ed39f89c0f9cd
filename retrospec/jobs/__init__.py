"""What every background job shares: context and result, run records, the compute process."""
