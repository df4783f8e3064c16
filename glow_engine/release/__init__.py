"""Releasing privatised images: batch privatisation, de-identified DICOM, the privacy ledger."""
