"""After the network: probability map -> boxes or polygons (``boxes``), reading order
(``reading_order``) and rectified text crops (``crops``). Torch-free."""
