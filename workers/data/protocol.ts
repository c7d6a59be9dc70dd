/** HTTP names shared by the data node and its client. */

/** Request header of PUT /blobs: refuse (422) unless the content hashes to this id. */
export const EXPECT_HEADER = "x-opg-expect-sha256";
/** Response header of GET/HEAD /blobs/<id>: the id (sha256) of the bytes served. */
export const SHA256_HEADER = "x-opg-sha256";
