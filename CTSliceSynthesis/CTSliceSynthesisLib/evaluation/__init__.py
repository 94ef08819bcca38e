"""Scoring synthesis against thin-slice truth (``scoring``), the image metrics (``metrics``), reports
(``report``) and figures (``figures``). Imports every package but ``cli``."""
